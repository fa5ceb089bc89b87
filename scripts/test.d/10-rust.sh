#!/usr/bin/env bash
# Rust: formatting, lints, unit and integration tests (crash tests kill real processes;
# durability_order traces the CLI's fsyncs with strace, key_clock uses libfaketime).
set -euo pipefail
cd "$(dirname "$0")/../.."
# tests/durability_order.rs reads the drain's syscalls with strace; tests/key_clock.rs
# steps a writer's wall clock with libfaketime
need=()
command -v strace >/dev/null || need+=(strace)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} != 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
fi
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build --release --bins
# --no-fail-fast: one failing test binary must not hide the results of the others
cargo test --release --no-fail-fast -- --test-threads=2
