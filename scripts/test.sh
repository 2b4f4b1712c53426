#!/usr/bin/env bash
# The whole test suite: formatting, lints, build, then every unit, integration and
# end-to-end test. Runs as root: the tests start real containers (namespaces, cgroups,
# veth pairs) and real paasd daemons on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build"
# The tests run the binaries (paasd, paas, paas-init) from target/debug.
cargo build --workspace
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
echo "== fuzz: router request heads, 20 s (router/fuzz/run.sh; fails on a crash)"
router/fuzz/run.sh 20
echo "== fuzz: stager archive unpacking, 20 s (stager/fuzz/run.sh; fails on a crash)"
stager/fuzz/run.sh 20
echo "== fuzz: build metadata and API request bodies, 15 s (stager/fuzz/run.sh 15 metadata)"
stager/fuzz/run.sh 15 metadata
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
