#!/usr/bin/env bash
# Stages a tiny static app (many times) and a 10,000-file app on a fresh paasd and
# prints how long staging took and how much of that was the platform's own work (the
# rest is time inside buildpack scripts, which paas measures in the staging container).
# Then stages the Python and Node.js examples with real dependencies, cold (a new app,
# an empty build cache) and cached (`paas restage`: the build cache has what the last
# staging installed), three times each: Python from vendored wheels (Flask, Requests,
# PyYAML and what they need, downloaded here with pip), Node.js with `npm ci` from a
# package-lock.json (Lodash, Moment, Axios, Yargs, Chalk and what they need, fetched
# here with npm and vendored as tarballs: a set in which no two packages need different
# versions of a third, so that every package the lockfile names is one tarball).
#
#   benches/staging.sh [RUNS]      (as root; default 15 pushes of the tiny app)
#
# Last line: cached restage ratio: X.XX   (median cached staging / median cold staging,
#                                          Python and Node.js together)
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

# Cold and cached stagings of apps with dependencies (on the host stack: this paasd has
# no built one). Staging is offline, so the dependencies come with the apps: Python
# wheels in vendor/, and for Node.js a tarball per package in vendor/ that the
# package-lock.json names (npm installs them as it would from the registry).
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
command -v pip3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null; }
cp -r examples/python-app "$work/py"
printf 'flask==3.0.3\nrequests==2.32.3\npyyaml==6.0.2\n' > "$work/py/requirements.txt"
pip3 download --quiet --disable-pip-version-check --dest "$work/py/vendor" \
  --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
  -r "$work/py/requirements.txt"
mkdir -p "$work/npm" "$work/node/vendor"
cp examples/node-app/* "$work/node/"
(cd "$work/npm" && echo '{"private": true}' > package.json \
  && npm install --no-audit --no-fund --silent lodash@4 moment@2 axios@1 yargs@17 chalk@4 uuid@9 dayjs@1 commander@11 >/dev/null)
deps=
for d in "$work"/npm/node_modules/* "$work"/npm/node_modules/@*/*; do
  [ -f "$d/package.json" ] || continue
  name=${d#"$work"/npm/node_modules/}
  file=$(echo "$name" | tr '/@' '-_').tgz
  tar -czf "$work/node/vendor/$file" -C "$(dirname "$d")" --exclude=node_modules \
    --transform "s,^$(basename "$d"),package," "$(basename "$d")"
  deps="$deps\"$name\": \"file:vendor/$file\","
done
(cd "$work/node" \
  && node -e 'const fs = require("fs"); const p = JSON.parse(fs.readFileSync("package.json"));
      p.dependencies = JSON.parse("{" + process.argv[1].replace(/,$/, "") + "}");
      fs.writeFileSync("package.json", JSON.stringify(p, null, 2));' "$deps" \
  && npm install --package-lock-only --offline --no-audit --no-fund --silent)
stage_ms() { # what paas printed -> the staging's total ms
  sed -n 's/.*Staged in \([0-9]*\) ms.*/\1/p' | tail -1
}
for app in py node; do
  : > "$work/$app-cold.txt"
  : > "$work/$app-cached.txt"
  for i in 1 2 3; do
    name="deps-$app-$i"
    target/release/paas push "$name" -p "$work/$app" -m 256M | stage_ms >> "$work/$app-cold.txt"
    target/release/paas restage "$name" | stage_ms >> "$work/$app-cached.txt"
    target/release/paas delete "$name" -f >/dev/null
  done
  echo "$app with dependencies: cold stagings $(paste -sd' ' "$work/$app-cold.txt") ms, cached $(paste -sd' ' "$work/$app-cached.txt") ms"
done
cold=$(( $(median < "$work/py-cold.txt") + $(median < "$work/node-cold.txt") ))
cached=$(( $(median < "$work/py-cached.txt") + $(median < "$work/node-cached.txt") ))
echo "cached restage ratio: $(awk -v a="$cached" -v b="$cold" 'BEGIN { printf "%.2f", a / b }')"
