#!/usr/bin/env bash
# How long a one-off task of an already-staged app takes: from `paas run-task` until its
# output is in the app's logs (read from a running `paas logs --follow`), many times.
# Beside it, the floor a bare container runtime sets: `runc run` of a one-off `echo` on
# a prepared bundle, until its output is read.
#
# paas does more per task than runc: the API call over TLS, the task recorded in the
# store, the app's droplet under a writable layer, its own network address, the
# launcher (profile scripts, then the command through bash), and the log pipeline.
# Heroku's one-off dynos (`heroku run:detached`) and Cloud Foundry's tasks cannot be
# installed from the registries this project may use; Heroku documents one-off dyno
# start in seconds.
#
#   benches/task-start.sh [RUNS]     (as root; default 40 runs of each)
#
# Last line: task start ms: N   (the median over the runs, paas)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-40}
. benches/lib.sh
command -v runc >/dev/null || { apt-get update -qq && apt-get install -y -qq runc >/dev/null; }
start_paasd 10.250.20.0/24
paas=target/release/paas

mkdir -p "$work/app"
cat > "$work/app/server.py" <<'PY'
import http.server, os
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler).serve_forever()
PY
"$paas" push tasky -p "$work/app" -b binary -c 'python3 server.py' -m 128M >/dev/null

# runc: a bundle whose read-only root has the host's /usr, running echo once.
bundle=$work/bundle
state=$(mktemp -d -p /dev/shm)
trap 'runc --root "$state" delete -f paas-task-bench >/dev/null 2>&1 || true; rm -rf "$state"; cleanup' EXIT
mkdir -p "$bundle/rootfs"/{usr,proc,dev,tmp}
for l in bin sbin lib lib64; do
  if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$bundle/rootfs/$l"; fi
done
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/echo", "marker"]
c["root"] = {"path": "rootfs", "readonly": True}
c["mounts"] += [{"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}]
if not any(n["type"] == "network" for n in c["linux"]["namespaces"]):
    c["linux"]["namespaces"].append({"type": "network"})
c["linux"]["resources"] = {"memory": {"limit": 128 << 20}, "pids": {"limit": 64}}
json.dump(c, open(sys.argv[1], "w"))
PY

python3 - "$paas" "$runs" "$bundle" "$state" "$(runc --version | head -n1)" <<'PY'
import queue, statistics, subprocess, sys, threading, time
paas, runs, bundle, state, runc_version = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

# Every line of the app's log as it arrives, with when.
follow = subprocess.Popen([paas, "logs", "tasky"], stdout=subprocess.PIPE, text=True)
lines = queue.Queue()
threading.Thread(target=lambda: [lines.put((time.monotonic(), l)) for l in follow.stdout], daemon=True).start()
time.sleep(1)

def wait_for(marker, limit):
    while True:
        left = limit - time.monotonic()
        if left <= 0:
            sys.exit(f"{marker} did not reach the logs within 30 s")
        try:
            at, line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if marker in line and "APP/TASK/" in line:
            return at

paas_ms, runc_ms = [], []
for i in range(runs):
    marker = f"task-marker-{i}-{time.time_ns()}"
    t0 = time.monotonic()
    subprocess.run([paas, "run-task", "tasky", f"echo {marker}"], check=True, stdout=subprocess.DEVNULL)
    paas_ms.append((wait_for(marker, t0 + 30) - t0) * 1000)
    t0 = time.monotonic()
    out = subprocess.run(["runc", "--root", state, "run", "--bundle", bundle, "paas-task-bench"],
                         check=True, capture_output=True, text=True).stdout
    assert "marker" in out
    runc_ms.append((time.monotonic() - t0) * 1000)
follow.terminate()

def show(name, xs):
    xs = sorted(xs)
    print(f"{name:5} runs={len(xs)} median={statistics.median(xs):.1f} ms p90={xs[int(len(xs) * 0.9)]:.1f} ms max={xs[-1]:.1f} ms")
show("paas", paas_ms)
show("runc", runc_ms)
print(f"({runc_version}; runc only starts echo on a prepared bundle and reads its output)")
print(f"task start ms: {statistics.median(paas_ms):.0f}")
PY
