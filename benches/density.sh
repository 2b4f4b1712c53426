#!/usr/bin/env bash
# Starts 200 instances of a small app (two apps of 100) on a fresh paasd and measures the
# memory the platform adds per running instance: the proportional set size (PSS) of
# paasd and of every paas-init process (each instance's shim and pid 1), at 200
# instances minus at 2, divided by 198. The apps' own processes are not counted.
#
#   sudo benches/density.sh
#
# Last line: density overhead per instance: N KiB
set -euo pipefail
cd "$(dirname "$0")/.."
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
  --instance-cidr 10.246.0.0/22 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q '^paasd ready' "$work/out" && break; sleep 0.1; done
api=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' "$work/out")
export PAAS_HOME=$work/home PAAS_API=$api PAAS_TOKEN=$(cat "$work/data/admin-token") PAAS_CA_CERT=$work/data/api-cert.pem
mkdir -p "$work/app"
echo 'sleeps; healthy while it runs' > "$work/app/README"

# PSS in KiB of paasd plus every paas-init process under this data folder.
platform_kib() {
  local total=0 p
  for p in "$pid" $(pgrep -f "paas-init $work/data" || true); do
    total=$(( total + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
push() { # NAME INSTANCES
  target/release/paas push "$1" -p "$work/app" -b binary -c 'exec sleep 100000' -u process -m 16M -i "$2" >/dev/null
}

push small-a 1; push small-b 1
sleep 2
low=$(platform_kib)
started=$(date +%s%N)
push small-a 100; push small-b 100
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
sleep 2
running=$(pgrep -f "paas-init $work/data" | wc -l)
high=$(platform_kib)
echo "instances: 2 -> 200 (paas-init processes: $running), started in ${elapsed_ms} ms"
echo "platform PSS: ${low} KiB at 2 instances, ${high} KiB at 200 instances"
echo "density overhead per instance: $(( (high - low) / 198 )) KiB"
