#!/usr/bin/env bash
# How long the web console takes from signing in to a fully drawn apps page, with 200
# apps on the platform: a fresh paasd gets 200 apps (made through the API, as `paas
# push` makes them, not staged), then headless Chromium (Debian's, through chromedriver)
# signs in as a developer of their space, RUNS times; each time is measured in the page,
# from the click on "Sign in" to the mark the console sets once every row is drawn.
#
#   benches/console.sh [RUNS]      (as root; default 7)
#
# Last line: console apps page ms: N   (the median)
#
# Peers: Heroku's dashboard and Stratos need their own platforms, which cannot run on
# this host; no figure of theirs is quoted.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
. benches/lib.sh
command -v chromedriver >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }
start_paasd 10.246.52.0/24

admin=$PAAS_TOKEN
target/release/paas create-user bench 'bench-password' >/dev/null
target/release/paas set-space-role bench default developer >/dev/null
for i in $(seq -w 1 200); do
  curl -sf --cacert "$PAAS_CA_CERT" -H "Authorization: Bearer $admin" -X PUT \
    -H 'Content-Type: application/json' --data '{"instances": 1, "memory": 64}' \
    "$api/v1/apps/bench-app-$i?space=default" >/dev/null
done
echo "apps: $(curl -sf --cacert "$PAAS_CA_CERT" -H "Authorization: Bearer $admin" "$api/v1/apps?per_page=1000" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chromedriver --port="$port" >/dev/null 2>&1 &
driver=$!
trap 'kill $driver 2>/dev/null || true; cleanup' EXIT

python3 - "$port" "$api" "$runs" <<'PY'
import json, statistics, sys, time, urllib.request
port, api, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)["value"]
for _ in range(100):
    try:
        call("GET", "/status"); break
    except OSError:
        time.sleep(0.1)
session = call("POST", "/session", {"capabilities": {"alwaysMatch": {
    "browserName": "chrome", "acceptInsecureCerts": True,
    "goog:chromeOptions": {"binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"]}}}})["sessionId"]
def run(script, args=()):
    return call("POST", f"/session/{session}/execute/sync", {"script": script, "args": list(args)})
def wait(script, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        value = run(script)
        if value:
            return value
        time.sleep(0.02)
    sys.exit(f"timed out waiting for: {script}")
times = []
try:
    for i in range(runs):
        call("POST", f"/session/{session}/url", {"url": f"{api}/"})
        wait("return !!document.getElementById('password');")
        # Typed in, then the click timed from inside the page.
        run("""document.getElementById('user').value = 'bench';
               document.getElementById('password').value = 'bench-password';
               performance.clearMarks();
               window.benchStart = performance.now();
               document.getElementById('sign-in').click();""")
        ms = wait("""const m = performance.getEntriesByName('paas-apps-drawn')[0];
                     return m && document.querySelectorAll('#apps tbody tr[data-app]').length === 200
                       ? m.startTime - window.benchStart : 0;""")
        times.append(ms)
        print(f"run {i + 1}: {ms:.0f} ms", flush=True)
        # Signed out for the next run.
        run("document.getElementById('sign-out').click();")
        wait("return !!document.getElementById('password');")
finally:
    call("DELETE", f"/session/{session}")
print(f"console apps page ms: {statistics.median(times):.0f}")
PY
