#!/usr/bin/env bash
# Does paasd or its router grow over time? For SECONDS, steady HTTP load on one app
# (wrk) while a loop pushes, scales, restarts, sets env, maps and unmaps routes, and
# makes and deletes an app. Once a minute the loop pauses until only the wanted
# instances run (nothing staging or draining) and samples, at rest, the resident memory
# and open descriptors of paasd and of its router: what an operation under way holds
# (each instance half a dozen descriptors in paasd, a deploy a few hundred KiB) swings
# a sample taken at any moment by more than an hour's growth. After a warm-up (the
# first quarter), growth is the least-squares slope of each series, per hour. Beside
# it: the same slope of the resident memory sampled every 10 s whatever is under way,
# and, from each process's own log every 15 s, its live heap (what the allocator handed
# out and did not get back) and its resident memory right after it returned its free
# pages (growth in the first is data kept; growth in the sampled RSS alone is free
# memory touched between trims).
#
#   benches/soak.sh [SECONDS]    (as root; default 1800)
#
# Last line: soak growth: rss KiB/h N, fds/h N   (paasd and router together)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-1800}
. benches/lib.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
export PAASD_LOG=info,paas_memory=debug  # paasd passes it on to its router
start_paasd 10.246.44.0/24

write_app "$work/app"
paas() { target/release/paas "$@" >/dev/null; }
push() { paas push "$1" -p "$work/app" -b binary -c 'python3 server.py' -i "${2:-1}" -m 64M -k 64M; }
push steady 2
push churn 1

router_pid=$(pgrep -f "paas-router.*$work" | head -1)
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
# At rest: steady's 2 instances and churn's 2 (the loop's step 1 always scales it to 2)
# are the only containers, nothing staging or draining. Waits at most 30 s.
wanted_containers=4
settle() {
  for _ in $(seq 300); do
    [ "$(ls "$work/data/containers" | wc -l)" -eq "$wanted_containers" ] && return
    sleep 0.1
  done
}

# The load: keep-alive GETs on the steady app for the whole run (wrk stops by itself).
wrk -t1 -c4 -d"${secs}s" -H "Host: steady.localhost" "http://$router/" >"$work/wrk" 2>&1 &
load=$!

: >"$work/samples"
: >"$work/at-rest"
start=$(date +%s)
next_sample=$start
next_rest=$start
i=0
while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
  i=$((i + 1))
  case $((i % 6)) in
    0) push churn 1 ;;
    1) paas scale churn -i $(( 1 + i % 3 )) ;;
    2) paas restart churn ;;
    3) paas set-env churn APP_BODY "v$i" ;;
    4) paas map-route churn localhost --hostname "extra-$((i % 4))"
       paas unmap-route churn localhost --hostname "extra-$((i % 4))" ;;
    5) push "tmp-$i" 1; paas logs "tmp-$i" --recent; paas delete "tmp-$i" -f -r ;;
  esac
  now=$(date +%s)
  if [ "$now" -ge "$next_sample" ]; then
    echo "$((now - start)) $(rss "$pid") $(rss "$router_pid")" >>"$work/samples"
    next_sample=$((now + 10))
  fi
  if [ $((i % 6)) -eq 4 ] && [ "$now" -ge "$next_rest" ]; then
    settle
    echo "$(( $(date +%s) - start )) $(rss "$pid") $(fds "$pid") $(rss "$router_pid") $(fds "$router_pid") $(ls "$work/data/containers" | wc -l)" >>"$work/at-rest"
    next_rest=$((now + 60))
  fi
done
wait "$load" || true
grep -E "Requests/sec|Non-2xx|Socket errors" "$work/wrk" || true
echo "operations: $i; samples: $(wc -l <"$work/samples") (seconds, paasd rss KiB, router rss KiB)"
# Every fifth minute's sample, to see the shape (a warm-up that levels off, or a slope).
awk 'NR == 1 || ($1 % 300) < 10' "$work/samples"; tail -1 "$work/samples"
echo "at rest: $(wc -l <"$work/at-rest") (seconds, paasd rss KiB and fds, router rss KiB and fds, containers)"
awk 'NR == 1 || ($1 % 300) < 60' "$work/at-rest"; tail -1 "$work/at-rest"
python3 - "$work/samples" "$work/at-rest" "$work/log" "$work/data/router/router.log" "$wanted_containers" <<'PY'
import os, re, sys
def after_warm_up(path):
    rows = [list(map(float, l.split())) for l in open(path) if l.strip()]
    return rows[len(rows) // 4:]
rows, rest = after_warm_up(sys.argv[1]), after_warm_up(sys.argv[2])
def slope(col, rows=rows):
    xs = [r[0] for r in rows]; ys = [r[col] for r in rows]
    n = len(xs)
    if n < 2: return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var * 3600
p_rss, p_fds, r_rss, r_fds = (slope(col, rest) for col in (1, 2, 3, 4))
# A rest the 30 s did not reach (an instance that never stopped) counts as it is.
wanted = int(sys.argv[5])
unsettled = sum(1 for r in rest if r[5] != wanted)
if unsettled:
    print(f"{unsettled} of {len(rest)} rest samples had other than {wanted} containers")
for name, path in (("paasd", sys.argv[3]), ("router", sys.argv[4])):
    if not os.path.exists(path): continue
    log = re.sub(r"\x1b\[[0-9;]*m", "", open(path, errors="replace").read())  # no colours
    for what, field in (("live heap", "in_use_kib"), ("rss right after trimming", "resident_kib")):
        series = [int(m.group(1)) for m in re.finditer(field + r"=(\d+)", log)]
        if series:
            # One reading every 15 s; the same warm-up left out.
            kept = [[i * 15.0, kib] for i, kib in enumerate(series)][len(series) // 4:]
            print(f"{name} {what}: {series[0]} -> {series[-1]} KiB, growth KiB/h {slope(1, kept):.0f}")
print(f"sampled every 10 s, whatever is under way: paasd rss KiB/h {slope(1):.0f}, router {slope(2):.0f}")
print(f"paasd growth at rest: rss KiB/h {p_rss:.0f}, fds/h {p_fds:.1f}")
print(f"router growth at rest: rss KiB/h {r_rss:.0f}, fds/h {r_fds:.1f}")
print(f"soak growth: rss KiB/h {p_rss + r_rss:.0f}, fds/h {p_fds + r_fds:.0f}")
PY
