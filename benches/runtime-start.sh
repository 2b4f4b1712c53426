#!/usr/bin/env bash
# Starts an isolated /bin/true with paas's runtime (paas-run) and with `runc run` on an
# equivalent bundle, interleaved, many times each, and prints the median of each and
# their ratio. Both get new mount, pid, uts, ipc, net and cgroup namespaces, a read-only
# root with the host's /usr, uid 2000, memory and pid limits, and are cleaned up after.
#
#   sudo benches/runtime-start.sh [RUNS]        (default 200 runs of each)
#
# Last line: runtime-start ratio runc/paas: X.XX  (median runc time / median paas time)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}

[ "$(id -u)" -eq 0 ] || { echo "run as root: both runtimes make namespaces and cgroups" >&2; exit 1; }
command -v runc >/dev/null || { apt-get update -qq && apt-get install -y -qq runc >/dev/null; }
command -v python3 >/dev/null || { echo "python3 is needed to compute medians" >&2; exit 1; }

scripts/build-release.sh
paas_run=target/release/paas-run

# Both runtimes keep their state on the same tmpfs, as they do in /run on most hosts (on
# this one /run is on disk, where every file made and removed costs a journal entry).
work=$(mktemp -d)
state=$(mktemp -d -p /dev/shm)
cleanup() {
  runc --root "$state/runc" delete -f paas-bench >/dev/null 2>&1 || true
  rm -rf "$work" "$state"
}
trap cleanup EXIT

# paas: a state folder with the stack's /etc prepared once, as paasd keeps it.
"$paas_run" --state-dir "$state/paas" -- /bin/true

# runc: a bundle whose root has the same /usr and /etc, read-only.
bundle=$work/bundle
mkdir -p "$bundle/rootfs"/{usr,etc,proc,dev,tmp}
for l in bin sbin lib lib64; do
  if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$bundle/rootfs/$l"; fi
done
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" "$state/paas/stack/etc" <<'PY'
import json, sys
path, etc = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["process"]["user"] = {"uid": 2000, "gid": 2000}
c["root"] = {"path": "rootfs", "readonly": True}
c["hostname"] = "paas-bench"
c["mounts"] += [
    {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro", "nosuid", "nodev"]},
    {"destination": "/etc", "type": "bind", "source": etc, "options": ["rbind", "ro", "nosuid", "nodev"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=65536k"]},
]
ns = c["linux"]["namespaces"]
for t in ("network", "cgroup"):
    if not any(n["type"] == t for n in ns):
        ns.append({"type": t})
c["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 64}}
json.dump(c, open(path, "w"), indent=2)
PY

# Times are microseconds from $EPOCHREALTIME (bash 5), which reads the clock without
# starting a process: `date` would add the same millisecond or so to both sides and pull
# the ratio towards 1.
paas_times=$work/paas.txt
runc_times=$work/runc.txt
: > "$paas_times"; : > "$runc_times"
for _ in $(seq "$runs"); do
  t0=${EPOCHREALTIME/./}; "$paas_run" --state-dir "$state/paas" -- /bin/true; t1=${EPOCHREALTIME/./}
  echo $(( t1 - t0 )) >> "$paas_times"
  t0=${EPOCHREALTIME/./}; runc --root "$state/runc" run --bundle "$bundle" paas-bench >/dev/null; t1=${EPOCHREALTIME/./}
  echo $(( t1 - t0 )) >> "$runc_times"
done

python3 - "$paas_times" "$runc_times" "$(runc --version | head -n1)" <<'PY'
import statistics, sys
paas = [int(x) for x in open(sys.argv[1])]
runc = [int(x) for x in open(sys.argv[2])]
def show(name, xs):
    xs = sorted(xs)
    print(f"{name:5} runs={len(xs)} median={statistics.median(xs)/1000:.2f} ms "
          f"mean={statistics.mean(xs)/1000:.2f} ms p90={xs[int(len(xs)*0.9)]/1000:.2f} ms")
show("paas", paas)
show("runc", runc)
print(f"({sys.argv[3]})")
print(f"runtime-start ratio runc/paas: {statistics.median(runc) / statistics.median(paas):.2f}")
PY
