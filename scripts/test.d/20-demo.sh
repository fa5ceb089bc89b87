#!/usr/bin/env bash
# The README's main job, as a newcomer runs it (must report 0 lost / 0 duplicated),
# and the fan-in -> process -> fan-out pipeline example.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cargo run --release --quiet -- demo --kills 8 | tee "$out"
grep -q '^  lost: *0$' "$out"
grep -q '^  duplicated: *0$' "$out"
grep -q '^demo: PASSED' "$out"
cargo run --release --quiet --example pipeline | tee "$out"
grep -q '^pipeline: PASSED' "$out"
echo "2 passed, 0 failed"
