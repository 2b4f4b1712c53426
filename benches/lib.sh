# Shared by the benchmarks that run a whole paasd: sourced, not run.
#
#   start_paasd CIDR    builds paas (release), starts paasd on a fresh data folder in
#                       $work (a temporary folder it makes), waits until it is ready, and
#                       sets $pid, $api, $router and the PAAS_* variables for the CLI.
#                       The paasd is stopped and $work removed when the script exits.
#   launch_paasd BINARY DATA CIDR [FLAGS...]
#                       starts that paasd on DATA (no build), waits until it is ready,
#                       and sets $pid, $api and $router and the PAAS_* variables.
#   write_app DIR       writes a small Python web app into DIR (push it with -b binary
#                       -c 'python3 server.py'): it answers every GET with $APP_BODY
#                       (default "ok") and logs every request on stdout.
#   median              reads numbers, one a line, and prints their median.

[ "$(id -u)" -eq 0 ] || { echo "run as root: paasd makes namespaces and cgroups" >&2; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
  touch "$work/stop" 2>/dev/null || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # A paasd that was killed leaves its router running.
  pkill -KILL -f "paas-router.*$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_paasd() {
  scripts/install-deps.sh
  scripts/build-release.sh
  launch_paasd target/release/paasd "$work/data" "$1" --http-listen 127.0.0.1:0 --https-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0
}

launch_paasd() {
  local binary=$1 data=$2 cidr=$3
  shift 3
  : >"$work/out"
  "$binary" --data-dir "$data" --api-listen 127.0.0.1:0 --instance-cidr "$cidr" "$@" >"$work/out" 2>>"$work/log" &
  pid=$!
  for _ in $(seq 300); do grep -q '^paasd ready' "$work/out" && break; sleep 0.02; done
  grep -q '^paasd ready' "$work/out" || { echo "paasd did not start:" >&2; cat "$work/log" >&2; exit 1; }
  api=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' "$work/out")
  router=$(sed -n 's/.* router=http:\/\/\([^ ]*\).*/\1/p' "$work/out")
  export PAAS_HOME=$work/home-$(basename "$data") PAAS_API=$api PAAS_TOKEN=$(cat "$data/admin-token")
  export PAAS_CA_CERT=$data/api-cert.pem
}

write_app() {
  mkdir -p "$1"
  cat >"$1/server.py" <<'PY'
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # one write per response: no Nagle stall between head and body
    def do_GET(self):
        body = os.environ.get("APP_BODY", "ok").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        # Every request is logged: an app that logs must survive paasd's death too.
        print(fmt % args, flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
PY
}

median() {
  sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
