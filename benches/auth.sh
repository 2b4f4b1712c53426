#!/usr/bin/env bash
# What access checks cost: authorised reads of one app (`GET /v1/apps/NAME`, over TLS
# with keep-alive, wrk) per second, with the checks (this tree: a developer's access
# token, found by its hash, the user's roles, the app's space) and without them (the
# last commit before they existed, 74c9d12, built beside this tree, read with the admin
# token, the only caller it knew). The two paasds run one after the other, in turns,
# on the same machine; each is asked the same way for the same time.
#
#   benches/auth.sh [SECONDS] [ROUNDS]    (as root; default 10 s, 3 rounds)
#
# Last line: auth overhead ratio: X.XX   (median reads/s with / without)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
base_commit=74c9d12
. benches/lib.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
scripts/install-deps.sh
scripts/build-release.sh

# The baseline, built once into a target folder of its own (kept, so a second run is
# quick); its worktree goes with $work.
base_target=target/auth-bench-base
git worktree add -f --detach "$work/base" "$base_commit" >/dev/null 2>&1
trap 'git worktree remove -f "$work/base" >/dev/null 2>&1 || true; cleanup' EXIT
(
  cd "$work/base"
  export CARGO_TARGET_DIR="$OLDPWD/$base_target"
  cargo build --release -q -p paas-controller --bin paasd
  cargo build --release -q -p paas-runtime --bin paas-init
)

run_paasd() { # BINARY DATA -> sets pid, api
  "$1" --data-dir "$2" --api-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --https-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --instance-cidr 10.250.30.0/24 >"$work/out" 2>"$work/log" &
  pid=$!
  for _ in $(seq 100); do grep -q '^paasd ready' "$work/out" && break; sleep 0.1; done
  grep -q '^paasd ready' "$work/out" || { echo "paasd did not start:" >&2; cat "$work/log" >&2; exit 1; }
  api=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' "$work/out")
}
stop_paasd() {
  kill "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  pid=
}
call() { # DATA TOKEN METHOD PATH [BODY]
  curl -fsS --cacert "$1/api-cert.pem" -H "Authorization: Bearer $2" -X "$3" \
    ${5:+-H 'Content-Type: application/json' --data "$5"} "$api$4"
}
reads() { # TOKEN -> reads per second
  wrk -t2 -c8 -d"${secs}s" -H "Authorization: Bearer $1" "$api/v1/apps/bench" |
    awk '/^Requests\/sec/ { printf "%d\n", $2 }'
}
settings='{"instances":1,"memory":64}'

: >"$work/with"; : >"$work/without"
for round in $(seq "$rounds"); do
  data=$work/base-data-$round
  run_paasd "$base_target/release/paasd" "$data"
  admin=$(cat "$data/admin-token")
  call "$data" "$admin" PUT "/v1/apps/bench?default-route=false" "$settings" >/dev/null
  r=$(reads "$admin"); echo "$r" >>"$work/without"
  echo "round $round without checks ($base_commit, admin token): $r reads/s"
  stop_paasd

  data=$work/data-$round
  run_paasd target/release/paasd "$data"
  admin=$(cat "$data/admin-token")
  call "$data" "$admin" POST /v1/users '{"name":"dev","password":"dev-password"}' >/dev/null
  call "$data" "$admin" PUT /v1/spaces/default/users/dev/roles/developer >/dev/null
  token=$(call "$data" "" POST /v1/login '{"user":"dev","password":"dev-password"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  call "$data" "$token" PUT "/v1/apps/bench?default-route=false" "$settings" >/dev/null
  r=$(reads "$token"); echo "$r" >>"$work/with"
  echo "round $round with checks (this tree, a developer's token): $r reads/s"
  stop_paasd
done
with=$(median <"$work/with")
without=$(median <"$work/without")
echo "median reads/s: with checks $with, without $without ($secs s each, wrk -t2 -c8)"
python3 -c "print(f'auth overhead ratio: {$with / $without:.2f}')"
