#!/usr/bin/env bash
# Fuzzing. First every committed crash reproducer (fuzz/regressions/<target>/) and the
# seeds replay as ordinary tests (tests/torture_fuzz.rs). Then each cargo-fuzz target
# runs for $TRIB_FUZZ_SECS seconds (default 45), starting from the seeds:
#   manifest_decode  Manifest::decode on any bytes (never a panic, always CorruptManifest,
#                    accepted manifests round-trip canonically)
#   api_ops          random programs of API operations with garbage arguments, checked
#                    against a model (exactly-once after every drain)
# A crash makes the stage fail and copies the input to fuzz/regressions/<target>/:
# commit it with the fix. cargo-fuzz needs nightly features: the nightly toolchain if
# installed, otherwise stable with RUSTC_BOOTSTRAP=1. If cargo-fuzz cannot be installed
# or built here, the fallback driver (random inputs and seed mutations, no coverage
# guidance) runs for the same time instead, and the stage says so.
# The sanitizer is $TRIB_FUZZ_SANITIZER (default none: tributary is safe Rust but for a
# few audited syscall wrappers, and an AddressSanitizer build takes twice as long on
# CI's 2 cores; set it to address to use ASan).
# Manually: cd fuzz && cargo +nightly fuzz run api_ops -- -max_total_time=600
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
SECS="${TRIB_FUZZ_SECS:-45}"
SAN="${TRIB_FUZZ_SANITIZER:-none}"
TARGETS=(manifest_decode api_ops ffi_ops)

# 1. reproducers and seeds; seeds written where cargo-fuzz starts from
mkdir -p fuzz/corpus
TRIB_FUZZ_WRITE_SEEDS="$PWD/fuzz/corpus" cargo test --release --test torture_fuzz -- --test-threads=2

# 2. cargo-fuzz, or the fallback
why=""
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  tc=(+nightly)
else
  tc=()
  export RUSTC_BOOTSTRAP=1 # cargo-fuzz's -Z flags on a stable toolchain
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked >/tmp/cargo-fuzz-install.log 2>&1 || why="cargo install cargo-fuzz failed (see /tmp/cargo-fuzz-install.log)"
fi
if [ -z "$why" ]; then
  start=$SECONDS
  (cd fuzz && cargo "${tc[@]}" fuzz build -O -s "$SAN") || why="cargo fuzz build failed"
  echo "fuzz build: $((SECONDS - start)) s"
fi

summary=()
if [ -n "$why" ]; then
  echo "cargo-fuzz is not usable here: $why"
  echo "running the fallback driver instead (random inputs and seed mutations, no coverage guidance)"
  out="$(mktemp)"
  TRIB_FUZZ_FALLBACK_SECS="$SECS" cargo test --release --test torture_fuzz random_inputs_fallback -- --nocapture | tee "$out"
  while read -r line; do summary+=("$line"); done < <(grep 'executions in' "$out")
  rm -f "$out"
else
  for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    dict=()
    [ "$t" = manifest_decode ] && dict=(-dict=dict/manifest.dict)
    log="$(mktemp)"
    set +e
    (cd fuzz && cargo "${tc[@]}" fuzz run -O -s "$SAN" "$t" "corpus/$t" -- \
      -max_total_time="$SECS" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 "${dict[@]}") >"$log" 2>&1
    rc=$?
    set -e
    tail -n 25 "$log"
    runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 executions in \2 s/p' "$log" | tail -1)"
    if [ $rc != 0 ]; then
      mkdir -p "fuzz/regressions/$t"
      for a in fuzz/artifacts/"$t"/*; do
        [ -f "$a" ] || continue
        cp "$a" "fuzz/regressions/$t/"
        echo "FUZZ CRASH in $t: reproducer copied to fuzz/regressions/$t/$(basename "$a") (commit it with the fix)"
      done
      rm -f "$log"
      echo "fuzz: 0 passed, 1 failed"
      exit 1
    fi
    summary+=("$t: ${runs:-? executions} ($(ls "fuzz/corpus/$t" | wc -l) corpus entries)")
    rm -f "$log"
  done
fi
echo
if [ -n "$why" ]; then echo "--- fuzz summary (fallback driver; cargo-fuzz NOT used: $why)"; else echo "--- fuzz summary (cargo-fuzz, sanitizer $SAN, $SECS s per target)"; fi
printf '  %s\n' "${summary[@]}"
echo "fuzz: ${#TARGETS[@]} passed, 0 failed"
