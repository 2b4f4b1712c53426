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
[ "$(id -u)" -eq 0 ] || { echo "run as root: paasd makes namespaces and cgroups" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --quiet --workspace

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

target/release/paasd --data-dir "$work/data" --api-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --instance-cidr 10.246.16.0/24 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q '^paasd ready' "$work/out" && break; sleep 0.1; done
api=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' "$work/out")
router=$(sed -n 's/.* router=http:\/\/\([^ ]*\).*/\1/p' "$work/out")
export PAAS_HOME=$work/home PAAS_API=$api PAAS_TOKEN=$(cat "$work/data/admin-token") PAAS_CA_CERT=$work/data/api-cert.pem
mkdir -p "$work/site"
echo 'root: .' > "$work/site/Staticfile"
echo '<h1>hello</h1>' > "$work/site/index.html"
push() { target/release/paas push "$1" -p "$work/site" -m 64M -k 64M >/dev/null; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

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
echo "runs: $runs; every push stages and starts (unchanged files are uploaded again)"
echo "push to first 200 ms: $(median < "$work/first.txt")"
echo "re-push unchanged ms: $(median < "$work/again.txt")"
