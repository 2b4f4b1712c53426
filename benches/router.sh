#!/usr/bin/env bash
# One backend (nginx answering a small response), then paas-router, HAProxy and nginx in
# front of it, each with one worker thread, loaded in turn, in rounds; each figure is
# the median of its rounds. `paasd` is paas-router as paasd runs it: fed its table and
# certificate over its Unix socket, with its access log on, every line sent back to the
# feeder (a stand-in for paasd, on CPU 0, that drops them). The proxies run on CPU 1;
# the load generator and the backend share CPU 0.
#
# Four protocols: HTTP/1.1 GETs and 1 KiB POSTs (wrk, keep-alive, 50 connections), GETs
# over TLS (wrk), and HTTP/2 over TLS (h2load, 50 connections of 10 streams). For each
# run, besides requests per second and p99, the CPU time the proxy's processes spent
# (user + system, from /proc/PID/stat before and after) over the requests it served.
#
#   benches/router.sh [SECONDS] [ROUNDS]   (as root; default 5 s per run, 5 rounds)
#
# Last line: router cpu ratio haproxy/paas: X.XX  (HTTP/1.1 GETs: HAProxy's CPU time per
# request over paas-router's; above 1, paas spends less)
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
PAASD_TLS=18908 HAPROXY_TLS=18909
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=bench.localhost" -addext "subjectAltName=DNS:bench.localhost" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/both.pem"
printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' > "$work/post.lua"
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
  bind 127.0.0.1:$HAPROXY_TLS ssl crt $work/both.pem alpn h2,http/1.1
  default_backend b
backend b
  server s1 127.0.0.1:$BACK
HAP

taskset -c 0 nginx -c "$work/backend.conf" -p "$work" & pids+=($!)
taskset -c 1 target/release/paas-router --listen 127.0.0.1:$PAAS --threads 1 \
  --https-listen 127.0.0.1:$PAAS_TLS --cert "$work/cert.pem" --key "$work/key.pem" \
  --admin-listen 127.0.0.1:0 --route bench.localhost=127.0.0.1:$BACK >"$work/paas.out" 2>"$work/paas.err" & pids+=($!)
taskset -c 1 target/release/paas-router --listen 127.0.0.1:$PAASD --threads 1 \
  --https-listen 127.0.0.1:$PAASD_TLS --admin-listen 127.0.0.1:0 --drain-seconds 0 --feed "$work/feed.sock" >"$work/paasd.out" 2>"$work/paasd.err" & pids+=($!)
for _ in $(seq 100); do [ -S "$work/feed.sock" ] && break; sleep 0.05; done
# The feeder: the route table in, the access log out.
taskset -c 0 python3 - "$work/feed.sock" "$BACK" "$work" >"$work/feeder.out" 2>&1 <<'PY' & pids+=($!)
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
f.readline()  # hello
route = {"host": "bench.localhost", "path": "", "app": "bench", "balance": "round-robin",
         "max_body_bytes": None, "backends": [{"addr": f"127.0.0.1:{sys.argv[2]}", "index": 0}]}
f.write(json.dumps({"routes": [route]}).encode() + b"\n")
pem = lambda name: open(f"{sys.argv[3]}/{name}.pem").read()
cert = {"domain": "bench.localhost", "default": True, "cert_pem": pem("cert"), "key_pem": pem("key")}
f.write(json.dumps({"certificates": [cert]}).encode() + b"\n")
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

# CPU time (clock ticks) spent so far by process $1 and its children (nginx's workers):
# "USER SYSTEM".
ticks() {
  local user=0 system=0 p u s
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    read -r u s < <(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12, $13 }')
    user=$((user + u)) system=$((system + s))
  done
  echo "$user $system"
}
hz=$(getconf CLK_TCK)

# One second of protocol $1 against port $2, not measured: connections and caches warm.
warm() {
  case $1 in
    h1) taskset -c 0 wrk -t1 -c50 -d1s -H 'Host: bench.localhost' "http://127.0.0.1:$2/" ;;
    post) taskset -c 0 wrk -t1 -c50 -d1s -s "$work/post.lua" -H 'Host: bench.localhost' "http://127.0.0.1:$2/" ;;
    tls) taskset -c 0 wrk -t1 -c50 -d1s -H 'Host: bench.localhost' "https://127.0.0.1:$2/" ;;
    h2) taskset -c 0 h2load -c50 -m10 -D 1 -H ':authority: bench.localhost' "https://127.0.0.1:$2/" ;;
  esac >/dev/null 2>&1 || true
}

# Prints "RPS P99_MS REQUESTS" for one run of protocol $1 against port $2.
load() {
  local proto=$1 port=$2 url rps p99 n
  case $proto in
    h1 | post) url="http://127.0.0.1:$port/" ;;
    tls | h2) url="https://127.0.0.1:$port/" ;;
  esac
  if [ "$proto" = h2 ]; then
    taskset -c 0 h2load -c50 -m10 -D "$secs" -H ':authority: bench.localhost' \
      --log-file "$work/h2.log" "$url" > "$work/h2.txt" 2>&1 || true
    rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i ~ /req\/s/) { v = $(i - 1); gsub(/,/, "", v); print v } }' "$work/h2.txt")
    n=$(awk '/^requests:/ { print $8 }' "$work/h2.txt")
    ok=$(awk '/^status codes:/ { print $3 }' "$work/h2.txt")
    [ "${ok:-0}" != 0 ] || { echo "warning: h2load got no 2xx from port $port:" >&2; tail -n 5 "$work/h2.txt" >&2; }
    # The log's third column is each request's time in microseconds.
    p99=$(awk '{ print $3 }' "$work/h2.log" | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", v[int(NR * 0.99)] / 1000; else print "-" }')
    echo "${rps:-0} $p99 ${n:-0}"
    return
  fi
  local script=()
  [ "$proto" = post ] && script=(-s "$work/post.lua")
  taskset -c 0 wrk -t1 -c50 -d"${secs}s" --latency "${script[@]}" -H 'Host: bench.localhost' "$url" > "$work/wrk.txt"
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/wrk.txt")
  n=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } print v }' "$work/wrk.txt")
  if grep -q 'Non-2xx' "$work/wrk.txt"; then echo "warning: non-2xx answers from port $port ($proto)" >&2; fi
  echo "$rps $p99 $n"
}

pid_of() {
  case $1 in
    paas) pgrep -f "paas-router --listen 127.0.0.1:$PAAS " ;;
    paasd) pgrep -f "paas-router --listen 127.0.0.1:$PAASD " ;;
    haproxy) pgrep -f "haproxy -f $work/haproxy.cfg" ;;
    nginx) cat "$work/proxy.pid" ;;
  esac
}
port_of() { # proxy protocol
  case $1:$2 in
    direct:*) echo $BACK ;;
    paas:h1 | paas:post) echo $PAAS ;; paas:*) echo $PAAS_TLS ;;
    paasd:h1 | paasd:post) echo $PAASD ;; paasd:*) echo $PAASD_TLS ;;
    haproxy:h1 | haproxy:post) echo $HAPROXY ;; haproxy:*) echo $HAPROXY_TLS ;;
    nginx:h1 | nginx:post) echo $NGINX ;; nginx:*) echo $NGINX_TLS ;;
  esac
}
for name in paas paasd haproxy nginx; do
  for _ in $(seq 100); do curl -sk -o /dev/null -H 'Host: bench.localhost' "https://127.0.0.1:$(port_of $name tls)/" && break; sleep 0.05; done
done

# Short rounds of every proxy in turn, each round in another order, so that a slow spell
# of this shared machine (they last seconds) falls on each alike; each figure is the
# median of its rounds.
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A rps p99 cpu usr sys
# Microseconds per request of $1 clock ticks over the run's $n requests.
per() { awk -v t="$1" -v n="$n" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print 0 }'; }
protos=(h1 post tls h2)
proxies=(paas paasd haproxy nginx)
for round in $(seq "$rounds"); do
  for proto in "${protos[@]}"; do
    list=("${proxies[@]}")
    [ "$proto" = h1 ] && list+=(direct)
    for i in "${!list[@]}"; do
      name=${list[$(((i + round) % ${#list[@]}))]}
      pid=$( [ "$name" = direct ] && cat "$work/backend.pid" || pid_of "$name")
      warm "$proto" "$(port_of "$name" "$proto")"
      read -r u0 s0 < <(ticks "$pid")
      read -r r p n < <(load "$proto" "$(port_of "$name" "$proto")")
      read -r u1 s1 < <(ticks "$pid")
      c=$(per $((u1 - u0 + s1 - s0)))
      rps[$name:$proto]+="$r "; p99[$name:$proto]+="$p "; cpu[$name:$proto]+="$c "
      usr[$name:$proto]+="$(per $((u1 - u0))) "; sys[$name:$proto]+="$(per $((s1 - s0))) "
      printf 'round %d  %-5s %-8s requests/s %10s   p99 %8s ms   cpu us/request %6s\n' "$round" "$proto" "$name" "$r" "$p" "$c"
    done
  done
done
echo "medians of $rounds rounds of ${secs} s:"
for proto in "${protos[@]}"; do
  list=("${proxies[@]}")
  [ "$proto" = h1 ] && list+=(direct)
  for name in "${list[@]}"; do
    for m in rps p99 cpu usr sys; do
      declare -n arr=$m
      arr[$name:$proto]=$(median <<<"${arr[$name:$proto]}")
      unset -n arr
    done
    printf '%-5s %-8s requests/s %10s   p99 %8s ms   cpu us/request %6s\n' "$proto" "$name" \
      "${rps[$name:$proto]}" "${p99[$name:$proto]}" "${cpu[$name:$proto]}"
  done
done
echo "($(haproxy -v | head -n1 | awk '{ print "HAProxy", $3 }'), $(nginx -v 2>&1 | sed 's/.*\///; s/^/nginx /'); direct: the backend's own CPU; paasd: the router only, its lines dropped by a stand-in feeder)"
# Where each proxy's CPU goes: its own code (user) or the kernel's (system: TCP/IP,
# loopback, epoll), which no proxy can make cheaper than its system calls cost.
split() { echo "${usr[$1:$2]} + ${sys[$1:$2]}"; }
echo "user + system us per request (HTTP/1.1): paas $(split paas h1), paasd $(split paasd h1), haproxy $(split haproxy h1), nginx $(split nginx h1)"
for proto in "${protos[@]}"; do
  case $proto in h1) what="HTTP/1.1" ;; post) what="HTTP/1.1 1 KiB POST" ;; tls) what="TLS" ;; h2) what="HTTP/2" ;; esac
  echo "cpu us per request ($what): paas ${cpu[paas:$proto]}, paasd ${cpu[paasd:$proto]}, haproxy ${cpu[haproxy:$proto]}, nginx ${cpu[nginx:$proto]}"
done
echo "router rps ratio paas/haproxy: $(awk -v a="${rps[paas:h1]}" -v b="${rps[haproxy:h1]}" 'BEGIN { printf "%.2f", a / b }')"
echo "router cpu ratio haproxy/paas: $(awk -v a="${cpu[haproxy:h1]}" -v b="${cpu[paas:h1]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
