#!/usr/bin/env bash
# Rust: formatting, lints, unit and integration tests (crash tests kill real processes;
# durability_order traces the CLI's fsyncs with strace).
set -euo pipefail
cd "$(dirname "$0")/../.."
# tests/durability_order.rs reads the drain's syscalls with strace
if ! command -v strace >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q strace >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q strace >/dev/null; }
fi
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build --release --bins
cargo test --release -- --test-threads=2
