#!/usr/bin/env bash
# A local paas cluster to try, on this machine: hosts are network namespaces joined by a
# bridge (in a namespace of its own, so nothing is routed through this host).
#
#   paas-c-etcd1..3   10.98.0.11-13   a three-member etcd cluster
#   paas-c-ctl        10.98.0.21      paasd: API, orchestration, a cell and a router
#                                     (--etcd-endpoints, --advertise-address)
#   paas-c-ctl2       10.98.0.22      a second controller (and router), no cell
#   paas-c-r1, -r2    10.98.0.31-32   paas-router --etcd-endpoints, on :8080
#   paas-c-cell1, -2  10.98.0.41-42   paasd --roles cell: more cells
#
#   scripts/cluster.sh up      start it (as root); prints how to use it
#   scripts/cluster.sh down    stop everything and remove its namespaces and data
#   scripts/cluster.sh start-cell N   start cell N (1 or 2) again, after it was killed
#   scripts/cluster.sh start-controller2   start the second controller again, after it was killed
#
# PAAS_BIN_DIR picks the binaries (default target/release, built if missing);
# PAAS_CLUSTER_DIR where state lives (default /var/lib/paas-cluster).
#
# What it shows: two controllers (one leads and places again what a lost cell ran)
# placing an app's instances over three cells on three hosts (cells fetch droplets from a
# host that keeps them), routers on their own hosts following one etcd cluster and
# reaching the instances through the ports the cells publish, and etcd riding out the
# loss of a member.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${PAAS_CLUSTER_DIR:-/var/lib/paas-cluster}
bin=${PAAS_BIN_DIR:-target/release}
lan=paas-c-lan
hosts=(paas-c-etcd1 paas-c-etcd2 paas-c-etcd3 paas-c-ctl paas-c-r1 paas-c-r2 paas-c-cell1 paas-c-cell2 paas-c-ctl2)
addrs=(10.98.0.11 10.98.0.12 10.98.0.13 10.98.0.21 10.98.0.31 10.98.0.32 10.98.0.41 10.98.0.42 10.98.0.22)
etcd_urls=http://10.98.0.11:2379,http://10.98.0.12:2379,http://10.98.0.13:2379

[ "$(id -u)" -eq 0 ] || { echo "run as root: it makes network namespaces and paasd makes containers" >&2; exit 1; }

down() {
  if [ -d "$dir/pids" ]; then
    for f in "$dir"/pids/*; do
      [ -f "$f" ] || continue
      kill "$(cat "$f")" 2>/dev/null || true
    done
    for f in "$dir"/pids/*; do
      [ -f "$f" ] || continue
      for _ in $(seq 150); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$(cat "$f")" 2>/dev/null || true
    done
  fi
  reap
  for ns in "${hosts[@]}" "$lan"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$dir"
}

# What a paasd killed with SIGKILL leaves (it stops its containers and its router only
# when asked to stop): its router (paas-router --feed names its socket under $dir), the
# containers (their paas-init processes name their folder under $dir; killing a pid 1
# ends its whole pid namespace), and their mounts under $dir.
reap() {
  [ -d "$dir" ] || return 0
  local real p
  real=$(realpath "$dir")
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qE "(paas-init|paas-router).*$real/"; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
  sleep 0.5
  for f in "$real"/*/containers/*/state.json; do
    [ -f "$f" ] || continue
    for ns in $(grep -o '"paas-[0-9a-z]*"' "$f" | tr -d '"'); do ip netns del "$ns" 2>/dev/null || true; done
  done
  awk -v d="$real/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Their cgroups (named as their folders; empty once their processes are gone), in
  # every v1 hierarchy and in v2's.
  local c g
  for c in "$real"/*/containers/*/; do
    [ -d "$c" ] || continue
    for g in /sys/fs/cgroup/*/paas/"$(basename "$c")" /sys/fs/cgroup/paas/"$(basename "$c")"; do
      [ -d "$g" ] && rmdir "$g" 2>/dev/null || true
    done
  done
}

start_cell() { # N: paasd --roles cell on paas-c-cellN
  local c=$1
  start "cell$c" "paas-c-cell$c" "$bin/paasd" --roles cell --data-dir "$dir/cell$c" \
    --etcd-endpoints "$etcd_urls" --advertise-address "10.98.0.4$c"
  wait_for "$dir/cell$c.out" '^paasd ready' "cell $c"
}

start_controller2() { # the second controller (and router), no cell, on paas-c-ctl2
  start paasd2 paas-c-ctl2 "$bin/paasd" --data-dir "$dir/paasd2" --roles controller,router \
    --etcd-endpoints "$etcd_urls" --advertise-address 10.98.0.22 \
    --api-listen 10.98.0.22:9443 --http-listen 10.98.0.22:8080 --https-listen 10.98.0.22:8443 \
    --admin-listen 127.0.0.1:9080 --instance-cidr 10.244.0.0/16
  wait_for "$dir/paasd2.out" '^paasd ready' "the second paasd"
}

start() { # NAME HOST COMMAND...: runs COMMAND in HOST, logs in $dir/NAME.log
  local name=$1 host=$2
  shift 2
  # nsenter, not `ip netns exec`: that one mounts a sysfs of its own over /sys, which
  # hides /sys/fs/cgroup from paasd.
  nsenter --net="/run/netns/$host" "$@" >"$dir/$name.out" 2>"$dir/$name.log" &
  echo $! >"$dir/pids/$name"
}

wait_for() { # FILE PATTERN WHAT
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done
  echo "$3 did not start; its log:" >&2
  cat "${1%.out}.log" >&2
  exit 1
}

up() {
  down
  if [ ! -x "$bin/paasd" ]; then
    scripts/install-deps.sh
    scripts/build-release.sh
  fi
  command -v etcd >/dev/null || scripts/install-deps.sh
  mkdir -p "$dir/pids"
  chmod 700 "$dir"
  ip netns add "$lan"
  ip -n "$lan" link add paas-c-br type bridge
  ip -n "$lan" link set paas-c-br up
  for i in "${!hosts[@]}"; do
    h=${hosts[$i]}
    ip netns add "$h"
    ip link add "c$i-host" netns "$h" type veth peer name "c$i-lan" netns "$lan"
    ip -n "$lan" link set "c$i-lan" master paas-c-br up
    ip -n "$h" addr add "${addrs[$i]}/24" dev "c$i-host"
    ip -n "$h" link set "c$i-host" up
    ip -n "$h" link set lo up
  done
  ip -n "$lan" addr add 10.98.0.1/24 dev paas-c-br

  local cluster=m1=http://10.98.0.11:2380,m2=http://10.98.0.12:2380,m3=http://10.98.0.13:2380
  for n in 1 2 3; do
    a=10.98.0.1$n
    start "etcd$n" "paas-c-etcd$n" etcd --data-dir "$dir/etcd$n" --name "m$n" \
      --listen-client-urls "http://$a:2379" --advertise-client-urls "http://$a:2379" \
      --listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
      --initial-cluster "$cluster" --initial-cluster-token paas-cluster \
      --logger zap --log-level error
  done
  for _ in $(seq 100); do
    ip netns exec paas-c-ctl curl -s -o /dev/null "http://10.98.0.11:2379/health" && break
    sleep 0.2
  done

  start paasd paas-c-ctl "$bin/paasd" --data-dir "$dir/paasd" \
    --etcd-endpoints "$etcd_urls" --advertise-address 10.98.0.21 \
    --api-listen 10.98.0.21:9443 --http-listen 10.98.0.21:8080 --https-listen 10.98.0.21:8443 \
    --admin-listen 127.0.0.1:9080 --instance-cidr 10.244.0.0/16
  wait_for "$dir/paasd.out" '^paasd ready' paasd
  start_controller2
  for c in 1 2; do start_cell "$c"; done
  for r in 1 2; do
    start "router$r" "paas-c-r$r" "$bin/paas-router" --listen "10.98.0.3$r:8080" \
      --admin-listen 127.0.0.1:8081 --drain-seconds 0 --etcd-endpoints "$etcd_urls"
    wait_for "$dir/router$r.out" '^paas-router ready' "router $r"
  done

  cat <<EOF
paas cluster up: etcd on 10.98.0.11-13, paasd on 10.98.0.21 (every role) and 10.98.0.22
(controller and router, no cell), routers on 10.98.0.31-32, cells of their own on
10.98.0.41-42.

  export PAAS_HOME=$dir/home PAAS_API=https://10.98.0.21:9443
  export PAAS_TOKEN=\$(cat $dir/paasd/admin-token) PAAS_CA_CERT=$dir/paasd/api-cert.pem
  ip netns exec paas-c-ctl $bin/paas push hello -p examples/python-app -i 3
  ip netns exec paas-c-lan curl -H 'Host: hello.localhost' http://10.98.0.31:8080/
  ip netns exec paas-c-lan curl -H 'Host: hello.localhost' http://10.98.0.32:8080/
  ip netns exec paas-c-ctl $bin/paas cells

The second controller takes the same token and CA: PAAS_API=https://10.98.0.22:9443. Logs: $dir/*.log. Stop: scripts/cluster.sh down
EOF
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  start-cell) [[ "${2:-}" =~ ^[12]$ ]] || { echo "usage: scripts/cluster.sh start-cell 1|2" >&2; exit 2; }
    rm -f "$dir/cell$2.out"; start_cell "$2" ;;
  start-controller2) rm -f "$dir/paasd2.out"; start_controller2 ;;
  *) echo "usage: scripts/cluster.sh up|down|start-cell 1|2|start-controller2" >&2; exit 2 ;;
esac
