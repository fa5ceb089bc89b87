#!/usr/bin/env bash
# Rust: formatting, lints, unit and integration tests (crash tests kill real processes).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build --release --bins
cargo test --release -- --test-threads=2
