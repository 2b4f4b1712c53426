#!/usr/bin/env bash
# Times pushes of a tiny static app on a warm paasd: from `paas push` until the app's
# URL first answers 200 (a new app each time), and a re-push of the unchanged app.
#
#   sudo benches/push.sh [RUNS]       (default 7 of each; medians are printed)
#
# Last lines: push to first 200 ms: N
#             re-push unchanged ms: N
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
. benches/lib.sh
start_paasd 10.246.16.0/24
mkdir -p "$work/site"
echo 'root: .' > "$work/site/Staticfile"
echo '<h1>hello</h1>' > "$work/site/index.html"
push() { target/release/paas push "$1" -p "$work/site" -m 64M -k 64M >/dev/null; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

push warmup   # the first staging unpacks buildpacks and warms caches
: > "$work/first.txt"; : > "$work/again.txt"
for i in $(seq "$runs"); do
  t0=$(now_ms)
  push "site$i"
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: site$i.localhost" "http://$router/")" = 200 ]; do :; done
  echo $(( $(now_ms) - t0 )) >> "$work/first.txt"
  t0=$(now_ms)
  push "site$i"
  echo $(( $(now_ms) - t0 )) >> "$work/again.txt"
done
echo "runs: $runs; every push stages and starts; files the platform holds are not sent again"
echo "push to first 200 ms: $(median < "$work/first.txt")"
echo "re-push unchanged ms: $(median < "$work/again.txt")"
