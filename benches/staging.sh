#!/usr/bin/env bash
# Stages a tiny static app (many times) and a 10,000-file app on a fresh paasd and
# prints how long staging took and how much of that was the platform's own work (the
# rest is time inside buildpack scripts, which paas measures in the staging container).
#
#   sudo benches/staging.sh [RUNS]      (default 15 pushes of the tiny app)
#
# Last line: staging overhead ms: N   (median platform time of a tiny-app staging)
#
# Peers: a cached `pack build` needs a Docker daemon and `cf push` a Cloud Foundry; neither
# can run on this host, so their published figures are quoted in the issue instead.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
. benches/lib.sh
start_paasd 10.246.8.0/24

mkdir -p "$work/tiny" "$work/big/files"
echo 'root: .' > "$work/tiny/Staticfile"
echo '<h1>tiny</h1>' > "$work/tiny/index.html"
cp "$work/tiny/Staticfile" "$work/tiny/index.html" "$work/big/"
python3 - "$work/big/files" <<'PY'
import os, sys
base = sys.argv[1]
for i in range(10_000):
    d = os.path.join(base, f"d{i // 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.txt"), "w") as f:
        f.write(f"file {i}\n")
PY

# Prints "TOTAL SCRIPTS PLATFORM" (ms) of one push, from the stager's own line.
push() { # NAME DIR
  target/release/paas push "$1" -p "$2" -m 64M -k 64M \
    | sed -n 's/.*Staged in \([0-9]*\) ms: \([0-9]*\) ms in buildpack scripts, \([0-9]*\) ms by the platform.*/\1 \2 \3/p'
}

push tiny "$work/tiny" >/dev/null   # warm: first droplet, first cache
: > "$work/tiny.txt"
for _ in $(seq "$runs"); do push tiny "$work/tiny" >> "$work/tiny.txt"; done
: > "$work/big.txt"
for _ in 1 2 3; do push big "$work/big" >> "$work/big.txt"; done

for app in tiny big; do
  total=$(awk '{ print $1 }' "$work/$app.txt" | median)
  scripts=$(awk '{ print $2 }' "$work/$app.txt" | median)
  platform=$(awk '{ print $3 }' "$work/$app.txt" | median)
  echo "$app app: $(wc -l < "$work/$app.txt") stagings, median ${total} ms, ${scripts} ms in buildpack scripts, ${platform} ms platform"
done
echo "staging overhead ms: $(awk '{ print $3 }' "$work/tiny.txt" | median)"
