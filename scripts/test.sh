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
cargo test --workspace
