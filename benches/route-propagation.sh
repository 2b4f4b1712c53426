#!/usr/bin/env bash
# How long a route change made on a controller takes to be served by a router on
# another host, measured between two network namespaces joined by a veth pair:
#
#   host A (10.99.0.1): etcd, and paasd with --etcd-endpoints and --advertise-address
#   host B (10.99.0.2): paas-router --etcd-endpoints, following etcd with a watch
#
# A client in host B maps a new route (`POST /v1/apps/NAME/routes` to paasd's API on A)
# and, from the same moment, asks B's router for it every millisecond until it answers
# 200; the time from the start of the API call to that 200 is one sample. (The route is
# live once etcd has it; the API answers after recording the change as an event too,
# and that time is printed apart.) Side by side, the way Dokku
# publishes a route: nginx in host B gets a new server block and `nginx -s reload`,
# from the writing of the file to nginx's first 200.
#
#   benches/route-propagation.sh [SAMPLES]    (as root; default 100)
#
# Last line: route propagation ms p99: N
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-100}
[ "$(id -u)" -eq 0 ] || { echo "run as root: it makes network namespaces" >&2; exit 1; }
scripts/install-deps.sh
command -v nginx >/dev/null || { apt-get install -y -qq nginx >/dev/null; }
scripts/build-release.sh

a=paas-rp-a b=paas-rp-b
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns del "$a" 2>/dev/null || true
ip netns del "$b" 2>/dev/null || true
ip netns add "$a"
ip netns add "$b"
ip link add rp-a netns "$a" type veth peer name rp-b netns "$b"
ip -n "$a" addr add 10.99.0.1/24 dev rp-a
ip -n "$b" addr add 10.99.0.2/24 dev rp-b
for ns in "$a" "$b"; do
  ip -n "$ns" link set lo up
done
ip -n "$a" link set rp-a up
ip -n "$b" link set rp-b up

# Host A: etcd, then paasd.
ip netns exec "$a" setpriv --pdeathsig KILL etcd --data-dir "$work/etcd" --name a \
  --listen-client-urls http://10.99.0.1:2379 --advertise-client-urls http://10.99.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster a=http://127.0.0.1:2380 --logger zap --log-level error >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  ip netns exec "$a" curl -s -o /dev/null http://10.99.0.1:2379/version && break
  sleep 0.1
done
# nsenter, not `ip netns exec`: that one mounts a sysfs of its own over /sys, which
# hides /sys/fs/cgroup from paasd.
nsenter --net="/run/netns/$a" target/release/paasd --data-dir "$work/data" \
  --etcd-endpoints http://10.99.0.1:2379 --advertise-address 10.99.0.1 \
  --api-listen 10.99.0.1:9443 --http-listen 127.0.0.1:0 --https-listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 --instance-cidr 10.246.40.0/24 >"$work/out" 2>"$work/log" &
pids+=($!)
for _ in $(seq 300); do grep -q '^paasd ready' "$work/out" && break; sleep 0.1; done
grep -q '^paasd ready' "$work/out" || { echo "paasd did not start:" >&2; cat "$work/log" >&2; exit 1; }
export PAAS_HOME=$work/home PAAS_API=https://10.99.0.1:9443
export PAAS_TOKEN=$(cat "$work/data/admin-token") PAAS_CA_CERT=$work/data/api-cert.pem

# Host B: the router.
ip netns exec "$b" target/release/paas-router --listen 10.99.0.2:8080 \
  --admin-listen 127.0.0.1:8081 --drain-seconds 0 \
  --etcd-endpoints http://10.99.0.1:2379 >"$work/router.out" 2>"$work/router.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^paas-router ready' "$work/router.out" && break; sleep 0.1; done

# An app to route to.
mkdir -p "$work/app"
cat > "$work/app/server.py" <<'PY'
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
PY
ip netns exec "$a" target/release/paas push rp -p "$work/app" -b binary -c 'python3 server.py' -m 64M -k 64M >/dev/null
# Where the cell publishes the instance for other hosts (on 10.99.0.1), for nginx.
backend=$(ip netns exec "$b" curl -s -X POST http://10.99.0.1:2379/v3/kv/range \
  -d "{\"key\": \"$(printf /paas/actual/rp/ | base64)\", \"range_end\": \"$(printf /paas/actual/rp0 | base64)\"}" |
  python3 -c 'import json,sys,base64; kvs=json.load(sys.stdin)["kvs"]; print(json.loads(base64.b64decode(kvs[0]["value"]))["address"])')

# The peer: nginx in host B, one server block per route, reloaded for each.
mkdir -p "$work/nginx/sites"
cat > "$work/nginx/nginx.conf" <<EOF
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events {}
http {
  access_log off;
  server { listen 10.99.0.2:8090 default_server; return 404; }
  include $work/nginx/sites/*.conf;
}
EOF
ip netns exec "$b" nginx -c "$work/nginx/nginx.conf"

ip netns exec "$b" python3 - "$samples" "$PAAS_TOKEN" "$PAAS_CA_CERT" "$backend" "$work/nginx" <<'PY'
import http.client, json, ssl, subprocess, sys, threading, time
samples, token, ca, backend, nginx = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
tls = ssl.create_default_context(cafile=ca)
tls.check_hostname = False

def served(port, host, deadline):
    while time.monotonic() < deadline:
        c = http.client.HTTPConnection("10.99.0.2", port, timeout=2)
        try:
            c.request("GET", "/", headers={"Host": host})
            if c.getresponse().status == 200:
                return True
        except OSError:
            pass
        finally:
            c.close()
        time.sleep(0.001)
    return False

def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]

paas, peer, api_ms = [], [], []
for i in range(samples):
    host = f"r{i}"
    body = json.dumps({"host": f"{host}.localhost", "path": ""})
    answered = {}
    def change():
        api = http.client.HTTPSConnection("10.99.0.1", 9443, context=tls, timeout=10)
        api.request("POST", "/v1/apps/rp/routes", body=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        r = api.getresponse(); r.read(); api.close()
        answered["status"], answered["ms"] = r.status, (time.monotonic() - t0) * 1000
    # The route is live once etcd has it, whether or not the API has answered yet
    # (it records the change as an event after): the router is asked from the start.
    t0 = time.monotonic()
    caller = threading.Thread(target=change)
    caller.start()
    if not served(8080, f"{host}.localhost", t0 + 10):
        sys.exit(f"route {host}.localhost was not served within 10 s")
    paas.append((time.monotonic() - t0) * 1000)
    caller.join()
    assert answered.get("status") in (200, 201), answered
    api_ms.append(answered["ms"])

    t0 = time.monotonic()
    with open(f"{nginx}/sites/{host}.conf", "w") as f:
        f.write(f"server {{ listen 10.99.0.2:8090; server_name {host}.localhost; location / {{ proxy_pass http://{backend}; }} }}\n")
    subprocess.run(["nginx", "-c", f"{nginx}/nginx.conf", "-s", "reload"], check=True)
    if not served(8090, f"{host}.localhost", t0 + 10):
        sys.exit(f"nginx did not serve {host}.localhost within 10 s")
    peer.append((time.monotonic() - t0) * 1000)

print(f"{samples} route changes, each from the start of the change to the first 200 on host B")
print(f"nginx reload (as Dokku publishes a route) ms: median {sorted(peer)[len(peer)//2]:.1f}, p99 {p99(peer):.1f}")
print(f"paas (API on host A, etcd watch, router on host B) ms: median {sorted(paas)[len(paas)//2]:.1f}, p99 {p99(paas):.1f}")
print(f"  the API call until its answer ms: median {sorted(api_ms)[len(api_ms)//2]:.1f}, p99 {p99(api_ms):.1f}")
print(f"route propagation ms p99: {round(p99(paas))}")
PY
