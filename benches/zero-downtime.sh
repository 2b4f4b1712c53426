#!/usr/bin/env bash
# Sends a bounded stream of requests through the router while it re-pushes a changed app
# twice and rolls back once, and counts the requests that failed (anything but a 200).
#
#   sudo benches/zero-downtime.sh
#
# Last line: zero-downtime failed requests: N of M
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
start_paasd 10.246.12.0/24

version() { # VERSION: an app that answers with its version
  mkdir -p "$work/app"
  cat > "$work/app/server.py" <<PY
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # one write per response: no Nagle stall between head and body
    def do_GET(self):
        body = b"$1"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
PY
}
paas() { target/release/paas "$@" >/dev/null; }
version v1
paas push zdt -p "$work/app" -b binary -c 'python3 server.py' -i 2 -m 64M -k 64M

# The load: keep-alive requests, one after another, until told to stop (at most 60 s
# and 200,000 requests).
python3 - "$router" "$work/stop" "$work/result" <<'PY' &
import http.client, os, sys, time
host, port = sys.argv[1].rsplit(":", 1)
stop, result = sys.argv[2], sys.argv[3]
ok = failed = 0
conn = None
deadline = time.time() + 60
while not os.path.exists(stop) and time.time() < deadline and ok + failed < 200_000:
    try:
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/", headers={"Host": "zdt.localhost"})
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            ok += 1
        else:
            failed += 1
            print(f"failed: {r.status} {r.getheader('x-paas-router-error')}", file=sys.stderr)
    except Exception as e:
        failed += 1
        print(f"failed: {e}", file=sys.stderr)
        conn = None
with open(result, "w") as f:
    f.write(f"{failed} {ok + failed}\n")
PY
load=$!
sleep 1
version v2; paas push zdt -p "$work/app" -b binary -c 'python3 server.py' -i 2 -m 64M -k 64M
sleep 1
version v3; paas push zdt -p "$work/app" -b binary -c 'python3 server.py' -i 2 -m 64M -k 64M
sleep 1
paas rollback zdt --version 2
sleep 3
touch "$work/stop"
wait "$load"
read -r failed total < "$work/result"
echo "pushed v2 and v3, rolled back to v2, under load"
echo "zero-downtime failed requests: $failed of $total"
