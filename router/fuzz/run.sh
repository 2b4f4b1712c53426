#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (stable Rust: no
# sanitizer, which needs nightly) and runs one for a while.
#
#   router/fuzz/run.sh [SECONDS] [TARGET]     (default 60 s of request_head)
#
# Findings (inputs that crash) are written to router/fuzz/artifacts/; the corpus grows
# in router/fuzz/corpus/TARGET. Exits non-zero if a crash was found.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
target=${2:-request_head}
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts, which are not instrumented.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --quiet --target "$host" --bin "$target"
mkdir -p "corpus/$target" artifacts
"target/$host/release/$target" -max_total_time="$secs" -artifact_prefix=artifacts/ "corpus/$target" 2>&1 | tail -n 5
