# Shared by the benchmarks that run a whole paasd: sourced, not run.
#
#   start_paasd CIDR    builds paas (release), starts paasd on a fresh data folder in
#                       $work (a temporary folder it makes), waits until it is ready, and
#                       sets $pid, $api, $router and the PAAS_* variables for the CLI.
#                       The paasd is stopped and $work removed when the script exits.
#   launch_paasd BINARY DATA CIDR [FLAGS...]
#                       starts that paasd on DATA (no build), waits until it is ready,
#                       and sets $pid, $api and $router and the PAAS_* variables.
#   median              reads numbers, one a line, and prints their median.

[ "$(id -u)" -eq 0 ] || { echo "run as root: paasd makes namespaces and cgroups" >&2; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
  touch "$work/stop" 2>/dev/null || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # A paasd that was killed leaves its router running.
  pkill -KILL -f "paas-router.*$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_paasd() {
  scripts/install-deps.sh
  scripts/build-release.sh
  launch_paasd target/release/paasd "$work/data" "$1" --http-listen 127.0.0.1:0 --https-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0
}

launch_paasd() {
  local binary=$1 data=$2 cidr=$3
  shift 3
  : >"$work/out"
  "$binary" --data-dir "$data" --api-listen 127.0.0.1:0 --instance-cidr "$cidr" "$@" >"$work/out" 2>>"$work/log" &
  pid=$!
  for _ in $(seq 300); do grep -q '^paasd ready' "$work/out" && break; sleep 0.02; done
  grep -q '^paasd ready' "$work/out" || { echo "paasd did not start:" >&2; cat "$work/log" >&2; exit 1; }
  api=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' "$work/out")
  router=$(sed -n 's/.* router=http:\/\/\([^ ]*\).*/\1/p' "$work/out")
  export PAAS_HOME=$work/home-$(basename "$data") PAAS_API=$api PAAS_TOKEN=$(cat "$data/admin-token")
  export PAAS_CA_CERT=$data/api-cert.pem
}

median() {
  sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
