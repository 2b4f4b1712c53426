#!/usr/bin/env bash
# Does app traffic stop when paasd dies? Two apps (two instances each) under steady
# keep-alive load through the router, while paasd is killed with SIGKILL and started
# again on its data, three times; every request that does not get a 200 counts as
# failed. The same is run first against the last commit whose router lived inside
# paasd and whose restart started every instance anew (94eadc2, built beside this
# tree), then against this tree. Both listen on the same fixed ports, so a client
# finds the router where it was.
#
#   benches/control-plane-restart.sh [ROUNDS]    (as root; default 3)
#
# Last line: failed requests during paasd restarts: N of M   (this tree)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
base_commit=94eadc2
. benches/lib.sh
scripts/install-deps.sh
scripts/build-release.sh

base_target=target/restart-bench-base
git worktree add -f --detach "$work/base" "$base_commit" >/dev/null 2>&1
trap 'git worktree remove -f "$work/base" >/dev/null 2>&1 || true; cleanup' EXIT
(
  cd "$work/base"
  export CARGO_TARGET_DIR="$OLDPWD/$base_target"
  cargo build --release -q -p paas-controller --bin paasd
  cargo build --release -q -p paas-runtime --bin paas-init
)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_app "$work/app"

# One run: BINARY NAME CIDR -> "FAILED TOTAL" in $work/result.
run() {
  local binary=$1 name=$2 cidr=$3
  local data=$work/data-$name
  local ports="--http-listen 127.0.0.1:$(free_port) --https-listen 127.0.0.1:$(free_port) --admin-listen 127.0.0.1:$(free_port)"
  # shellcheck disable=SC2086
  launch_paasd "$binary" "$data" "$cidr" $ports
  for app in alpha beta; do
    target/release/paas push "$app" -p "$work/app" -b binary -c 'python3 server.py' -i 2 -m 64M -k 64M >/dev/null
  done
  rm -f "$work/stop" "$work/result"
  # The load: two clients, one per app, keep-alive requests one after another, until
  # told to stop (at most 120 s and 400,000 requests in all).
  python3 - "$router" "$work/stop" "$work/result" <<'PY' &
import http.client, os, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
stop, result = sys.argv[2], sys.argv[3]
counts = {}
deadline = time.time() + 120
def load(app):
    ok = failed = 0
    conn = None
    while not os.path.exists(stop) and time.time() < deadline and ok + failed < 200_000:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("GET", "/", headers={"Host": f"{app}.localhost"})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                ok += 1
            else:
                failed += 1
        except Exception:
            failed += 1
            conn = None
            time.sleep(0.01)
    counts[app] = (ok, failed)
threads = [threading.Thread(target=load, args=(a,)) for a in ("alpha", "beta")]
for t in threads: t.start()
for t in threads: t.join()
failed = sum(f for _, f in counts.values())
total = sum(o + f for o, f in counts.values())
with open(result, "w") as f:
    f.write(f"{failed} {total}\n")
PY
  local load=$!
  sleep 3
  for round in $(seq "$rounds"); do
    local killed_at
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    killed_at=$(date +%s%N)
    # shellcheck disable=SC2086
    launch_paasd "$binary" "$data" "$cidr" $ports
    echo "$name: round $round: paasd killed and ready again in $(( ($(date +%s%N) - killed_at) / 1000000 )) ms"
    sleep 3
  done
  touch "$work/stop"
  wait "$load"
  kill "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  pid=
}

run "$base_target/release/paasd" base 10.246.40.0/24
read -r base_failed base_total <"$work/result"
run target/release/paasd tree 10.246.41.0/24
read -r failed total <"$work/result"
echo "router inside paasd ($base_commit): failed requests during paasd restarts: $base_failed of $base_total"
echo "failed requests during paasd restarts: $failed of $total"
