#!/usr/bin/env bash
# How long a cluster takes to run a lost cell's instance elsewhere, under steady load.
#
# The local cluster of scripts/cluster.sh (hosts as network namespaces: a three-member
# etcd, a controller host with a cell, a second controller without one, two cells on
# their own, two routers: three cells), with a 2-instance app. Clients on the LAN send requests through a router without pause
# (4 keep-alive connections); after 3 s, every process of a cell that holds one of the
# instances (its paasd and its containers) is killed with SIGKILL, as a host that dies.
# The failover time runs from the kill until the lost instance's index answers again
# through the router: the killed instance cannot answer, so that answer comes from its
# replacement on another cell.
#
# Peers: Diego (Cloud Foundry), Nomad and Kubernetes cannot be installed from the
# registries this project may use, so they are not run here; their documented defaults
# are printed beside the figure, marked as such.
#
#   benches/failover.sh    (as root)
#
# Last line: cell failover seconds: X.XX
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root: it makes network namespaces" >&2; exit 1; }
scripts/install-deps.sh
scripts/build-release.sh
work=$(mktemp -d)
export PAAS_BIN_DIR=target/release PAAS_CLUSTER_DIR=$work/cluster
cleanup() {
  scripts/cluster.sh down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/cluster.sh up >/dev/null
dir=$PAAS_CLUSTER_DIR
export PAAS_HOME=$dir/home PAAS_API=https://10.98.0.21:9443
export PAAS_TOKEN=$(cat "$dir/paasd/admin-token") PAAS_CA_CERT=$dir/paasd/api-cert.pem
paas() { ip netns exec paas-c-ctl target/release/paas "$@"; }

mkdir -p "$work/app"
cat > "$work/app/server.py" <<'PY'
import http.server, os
index = os.environ["CF_INSTANCE_INDEX"].encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body leave in one write, as from any production app server. Unbuffered,
    # http.server writes them apart, and Nagle's algorithm holds the body back until
    # the head's delayed ACK (40 ms): nearly every request would then sit, head passed
    # on and body not yet sent, in the one state a proxy cannot recover from when the
    # instance dies (the client already has the head).
    wbufsize = 1 << 16
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(index)))
        self.end_headers()
        self.wfile.write(index)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
PY
paas push fo -p "$work/app" -b binary -c 'python3 server.py' -m 64M -k 64M -i 2 >/dev/null

# A cell on its own that runs one of the instances: the one to kill.
paas app fo --json >"$work/app.json"
paas cells --json >"$work/cells.json"
read -r victim index < <(python3 - "$work/app.json" "$work/cells.json" <<'PY'
import json, sys
app, cells = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
cells = cells if isinstance(cells, list) else cells["resources"]
address = {c["id"]: c["address"] for c in cells}
for i in app["instances"]:
    a = address.get(i["cell"], "")
    if a in ("10.98.0.41", "10.98.0.42"):
        print(a[-1], i["index"])
        break
PY
) || true
[ -n "${victim:-}" ] || { echo "no instance runs on a cell of its own" >&2; paas app fo >&2; exit 1; }
echo "killing cell $victim (10.98.0.4$victim), which runs instance $index"

kill_cell() {
  local real p
  real=$(realpath "$dir/cell$victim")
  kill -KILL "$(cat "$dir/pids/cell$victim")"
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "paas-init.*$real/"; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
}
export -f kill_cell
export dir victim

ip netns exec paas-c-lan python3 - "$index" <<'PY'
import http.client, subprocess, sys, threading, time
lost = sys.argv[1]
stop = threading.Event()
lock = threading.Lock()
results = []  # (time sent, time answered, ok, instance index or why it failed)

def client():
    conn = None
    while not stop.is_set():
        t = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("10.98.0.31", 8080, timeout=10)
            conn.request("GET", "/", headers={"Host": "fo.localhost"})
            r = conn.getresponse()
            body = r.read().decode()
            ok = r.status == 200
            if not ok:
                body = f"HTTP {r.status}"
            if r.getheader("Connection", "").lower() == "close":
                conn.close(); conn = None
        except (OSError, http.client.HTTPException) as e:
            # Refused, reset, cut short: a failed request.
            ok, body = False, type(e).__name__
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            results.append((t, time.monotonic(), ok, body))

threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()
time.sleep(3)
killed_at = time.monotonic()
subprocess.run(["bash", "-c", "kill_cell"], check=True)
# Requests sent once every process of the cell is dead: an answer from the lost index
# comes from its replacement.
dead_at = time.monotonic()
back_at = None
deadline = killed_at + 60
while time.monotonic() < deadline and back_at is None:
    time.sleep(0.01)
    with lock:
        back_at = next((a for s, a, ok, i in results if s > dead_at and ok and i == lost), None)
time.sleep(2)
stop.set()
for t in threads:
    t.join()
failed = sum(1 for _, _, ok, _ in results if not ok)
kinds = {}
for _, _, ok, why in results:
    if not ok:
        kinds[why] = kinds.get(why, 0) + 1
if kinds:
    print("failures by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
print(f"requests through the router: {len(results)}, {len(results) / (results[-1][1] - results[0][1]):.0f}/s")
print("reference, not measured here (documented defaults): Diego: 15 s presence TTL + up to 30 s convergence; Nomad: ~20 s; Kubernetes: ~5 min")
after = sum(1 for s, _, ok, _ in results if s > killed_at and not ok)
if failed:
    print(f"failed requests sent after the kill: {after}; the others were in flight to the killed host")
print(f"killing every process of the cell took {(dead_at - killed_at) * 1000:.0f} ms")
print(f"failed requests: {failed} of {len(results)}")
if back_at is None:
    sys.exit("the lost instance did not answer again within 60 s")
print(f"cell failover seconds: {back_at - killed_at:.2f}")
PY
