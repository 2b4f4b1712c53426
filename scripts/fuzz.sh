#!/usr/bin/env bash
# Builds a fuzz crate's targets with libFuzzer's coverage instrumentation (stable Rust: no
# sanitizer, which needs nightly) and runs one for a while.
#
#   scripts/fuzz.sh CRATE_DIR SECONDS TARGET
#   e.g. scripts/fuzz.sh router/fuzz 20 request_head, scripts/fuzz.sh stager/fuzz 20 archive
#
# CRATE_DIR is a fuzz crate with a workspace of its own (router/fuzz, stager/fuzz), from
# the current folder. Each crate's run.sh calls this with its defaults:
#   router/fuzz/run.sh [SECONDS] [TARGET]     (default 60 s of request_head)
#   stager/fuzz/run.sh [SECONDS] [TARGET]     (default 60 s of archive; or metadata)
#
# Findings (inputs that crash) are written to CRATE_DIR/artifacts/; the corpus grows in
# CRATE_DIR/corpus/TARGET. Exits non-zero if a crash was found. A finding runs again, with
# its whole message, as CRATE_DIR/target/HOST/release/TARGET CRATE_DIR/artifacts/crash-...
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 CRATE_DIR SECONDS TARGET" >&2
    exit 2
fi
cd "$1"
secs=$2
target=$3
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts, which are not instrumented.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --quiet --target "$host" --bin "$target"
mkdir -p "corpus/$target" artifacts
"target/$host/release/$target" -max_total_time="$secs" -artifact_prefix=artifacts/ "corpus/$target" 2>&1 | tail -n 5
