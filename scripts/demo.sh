#!/usr/bin/env bash
# The main job on one host: build paas, start paasd on embedded defaults (SQLite and
# blobs in $PAAS_DATA_DIR), push examples/static-site with two instances, and print its
# URL once it answers. paasd keeps running; the last lines say how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir=${PAAS_DATA_DIR:-/var/lib/paas}
app=${PAAS_DEMO_APP:-hello}

scripts/install-deps.sh
echo "== building (release)"
scripts/build-release.sh

mkdir -p "$data_dir"
pidfile="$data_dir/paasd.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "== paasd is already running (pid $(cat "$pidfile"))"
else
  echo "== starting paasd (data in $data_dir, log in $data_dir/paasd.log)"
  : > "$data_dir/paasd.out"
  nohup target/release/paasd --data-dir "$data_dir" >"$data_dir/paasd.out" 2>"$data_dir/paasd.log" &
  echo $! > "$pidfile"
  for _ in $(seq 1 100); do
    grep -q '^paasd ready' "$data_dir/paasd.out" && break
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "error: paasd stopped; its log:" >&2
      cat "$data_dir/paasd.log" >&2
      exit 1
    fi
    sleep 0.1
  done
fi
ready=$(grep -m1 '^paasd ready' "$data_dir/paasd.out")
api=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' <<<"$ready")

export PAAS_HOME=${PAAS_HOME:-$HOME/.paas}
paas=target/release/paas
"$paas" login --api "$api" --token "$(cat "$data_dir/admin-token")" --ca-cert "$data_dir/api-cert.pem"
"$paas" push "$app" -p examples/static-site -i 2
url=$("$paas" app "$app" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["url"])')
status=$(curl -s -o /dev/null -w '%{http_code}' "$url/")
echo
echo "$app answers $status at $url"
echo "stop paasd with: kill \$(cat $pidfile)"
