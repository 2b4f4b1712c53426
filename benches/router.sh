#!/usr/bin/env bash
# One backend (nginx answering a small response), then paas-router, HAProxy and nginx in
# front of it, each with one worker thread, loaded in turn by wrk (keep-alive, 50
# connections), in rounds; each figure is the median of its rounds. `paasd` is
# paas-router as paasd runs it: fed its table over its Unix socket, with its access log
# on, every line sent back to the feeder (a stand-in for paasd, on CPU 0). The proxies run on
# CPU 1; wrk and the backend share CPU 0. Then TLS runs (wrk over HTTPS) and
# HTTP/2-over-TLS runs (h2load, 50 connections, 10 streams each) of paas-router beside
# nginx, in rounds as well.
#
#   sudo benches/router.sh [SECONDS] [ROUNDS]   (default 5 s per run, 5 rounds)
#
# Last line: router rps ratio paas/haproxy: X.XX
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-5}
[ "$(id -u)" -eq 0 ] || { echo "run as root (to install peers)" >&2; exit 1; }
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet -p paas-router --bin paas-router

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

BACK=18901 PAAS=18902 HAPROXY=18903 NGINX=18904 PAAS_TLS=18905 NGINX_TLS=18906 PAASD=18907
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=bench.localhost" -addext "subjectAltName=DNS:bench.localhost" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/backend.conf" <<NGX
daemon off; worker_processes 1; pid $work/backend.pid; error_log $work/backend.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACK; location / { return 200 "hello from the backend\n"; } } }
NGX
cat > "$work/proxy.conf" <<NGX
daemon off; worker_processes 1; pid $work/proxy.pid; error_log $work/proxy.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$BACK; keepalive 128; }
  server { listen 127.0.0.1:$NGINX;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:$NGINX_TLS ssl http2;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
cat > "$work/haproxy.cfg" <<HAP
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:$HAPROXY
  default_backend b
backend b
  server s1 127.0.0.1:$BACK
HAP

taskset -c 0 nginx -c "$work/backend.conf" -p "$work" & pids+=($!)
taskset -c 1 target/release/paas-router --listen 127.0.0.1:$PAAS --threads 1 \
  --https-listen 127.0.0.1:$PAAS_TLS --cert "$work/cert.pem" --key "$work/key.pem" \
  --admin-listen 127.0.0.1:0 --route bench.localhost=127.0.0.1:$BACK >"$work/paas.out" 2>"$work/paas.err" & pids+=($!)
taskset -c 1 target/release/paas-router --listen 127.0.0.1:$PAASD --threads 1 \
  --admin-listen 127.0.0.1:0 --drain-seconds 0 --feed "$work/feed.sock" >"$work/paasd.out" 2>"$work/paasd.err" & pids+=($!)
for _ in $(seq 100); do [ -S "$work/feed.sock" ] && break; sleep 0.05; done
# The feeder: the route table in, the access log out.
taskset -c 0 python3 - "$work/feed.sock" "$BACK" >"$work/feeder.out" 2>&1 <<'PY' & pids+=($!)
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
f.readline()  # hello
route = {"host": "bench.localhost", "path": "", "app": "bench", "balance": "round-robin",
         "max_body_bytes": None, "backends": [{"addr": f"127.0.0.1:{sys.argv[2]}", "index": 0}]}
f.write(json.dumps({"routes": [route]}).encode() + b"\n")
f.flush()
# The access log is read and dropped: this measures the router's side of it, not a
# Python parser's (paasd's side, appending lines to the app's log, is Rust).
while f.read1(1 << 20):
    pass
PY
taskset -c 1 haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.out" 2>&1 & pids+=($!)
taskset -c 1 nginx -c "$work/proxy.conf" -p "$work" & pids+=($!)
for port in $BACK $PAAS $HAPROXY $NGINX $PAASD; do
  for _ in $(seq 100); do
    curl -s -o /dev/null -H 'Host: bench.localhost' "http://127.0.0.1:$port/" && break
    sleep 0.05
  done
done

# Prints "RPS P99_MS" for one wrk run against URL $1.
load() {
  taskset -c 0 wrk -t1 -c50 -d1s -H 'Host: bench.localhost' "$1" >/dev/null
  taskset -c 0 wrk -t1 -c50 -d"${secs}s" --latency -H 'Host: bench.localhost' "$1" > "$work/wrk.txt"
  local rps p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } print v }' "$work/wrk.txt")
  if grep -q 'Non-2xx' "$work/wrk.txt"; then echo "warning: non-2xx answers from $1" >&2; fi
  echo "$rps $p99"
}

# Short rounds of all four in turn, each round in another order, so that a slow spell of
# this shared machine (they last seconds) falls on each alike; each figure is the median
# of its rounds.
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A rps p99
order=(direct paas paasd haproxy nginx)
for round in $(seq "$rounds"); do
  for i in "${!order[@]}"; do
    name=${order[$(((i + round) % ${#order[@]}))]}
    case $name in direct) port=$BACK ;; paas) port=$PAAS ;; paasd) port=$PAASD ;; haproxy) port=$HAPROXY ;; nginx) port=$NGINX ;; esac
    read -r r p < <(load "http://127.0.0.1:$port/")
    rps[$name]+="$r "; p99[$name]+="$p "
    printf 'round %d  %-8s requests/s %10s   p99 %8s ms\n' "$round" "$name" "$r" "$p"
  done
done
for name in "${order[@]}"; do
  rps[$name]=$(median <<<"${rps[$name]}"); p99[$name]=$(median <<<"${p99[$name]}")
  printf '%-8s requests/s %10s   p99 %8s ms   (medians of %d rounds)\n' "$name" "${rps[$name]}" "${p99[$name]}" "$rounds"
done
# TLS (HTTP/1.1 over TLS, keep-alive) and HTTP/2 over TLS, beside nginx, in rounds too.
declare -A tls tls99 h2
for name in paas nginx; do
  case $name in paas) port=$PAAS_TLS ;; nginx) port=$NGINX_TLS ;; esac
  for _ in $(seq 100); do curl -sk -o /dev/null -H 'Host: bench.localhost' "https://127.0.0.1:$port/" && break; sleep 0.05; done
done
tls_order=(paas nginx)
for round in $(seq "$rounds"); do
  for i in 0 1; do
    name=${tls_order[$(((i + round) % 2))]}
    case $name in paas) port=$PAAS_TLS ;; nginx) port=$NGINX_TLS ;; esac
    read -r r p < <(load "https://127.0.0.1:$port/")
    tls[$name]+="$r "; tls99[$name]+="$p "
    taskset -c 0 h2load -c50 -m10 -D "$secs" --warm-up-time 1 -H ':authority: bench.localhost' \
      "https://127.0.0.1:$port/" > "$work/h2.txt" 2>&1 || true
    h2rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i ~ /req\/s/) { v = $(i - 1); gsub(/,/, "", v); print v } }' "$work/h2.txt")
    h2ok=$(awk '/^status codes:/ { print $3 }' "$work/h2.txt")
    [ "${h2ok:-0}" != 0 ] || { echo "warning: h2load got no 2xx from $name:" >&2; tail -n 5 "$work/h2.txt" >&2; }
    h2[$name]+="${h2rps:-0} "
    printf 'round %d  %-8s TLS requests/s %10s   p99 %8s ms   HTTP/2 requests/s %10s\n' \
      "$round" "$name" "$r" "$p" "${h2rps:-?}"
  done
done
for name in paas nginx; do
  printf '%-8s TLS requests/s %10s   p99 %8s ms   HTTP/2 requests/s %10s   (medians)\n' "$name" \
    "$(median <<<"${tls[$name]}")" "$(median <<<"${tls99[$name]}")" "$(median <<<"${h2[$name]}")"
done
ratio=$(awk -v a="${rps[paas]}" -v b="${rps[haproxy]}" 'BEGIN { printf "%.2f", a / b }')
echo "($(haproxy -v | head -n1 | awk '{ print "HAProxy", $3 }'), $(nginx -v 2>&1 | sed 's/.*\///; s/^/nginx /'))"
echo "router rps ratio paas/haproxy: $ratio"
