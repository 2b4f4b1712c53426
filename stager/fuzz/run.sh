#!/usr/bin/env bash
exec "$(dirname "$0")/../../scripts/fuzz.sh" "$(dirname "$0")" "${1:-60}" "${2:-archive}"
