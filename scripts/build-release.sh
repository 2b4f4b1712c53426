#!/usr/bin/env bash
# Builds paas for release into target/release. The two runtime binaries that start a
# process for every container (paas-init, and paas-run for trying the runtime by hand)
# are then linked again statically, so that a container start skips the dynamic loader
# (about 0.5 ms each: benches/runtime-start.sh). Only the final link changes: cargo
# cannot link single binaries of a workspace statically without building every crate for
# an explicit --target, and the daemon and CLI stay dynamic because glibc's name lookups
# need its shared libraries.
#
#   scripts/build-release.sh [CARGO BUILD OPTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --quiet "$@"
for bin in paas-init paas-run; do
  cargo rustc --release --quiet -p paas-runtime --bin "$bin" -- -C target-feature=+crt-static
done
