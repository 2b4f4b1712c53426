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
. benches/lib.sh
start_paasd 10.246.0.0/22
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
