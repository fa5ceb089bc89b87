#!/usr/bin/env bash
# Rust, every package of the workspace: formatting, lints, unit and integration tests
# (crash tests kill real processes; durability_order traces the CLI's fsyncs with
# strace, key_clock uses libfaketime).
set -euo pipefail
cd "$(dirname "$0")/../.."
# tests/durability_order.rs reads the drain's syscalls with strace; tests/key_clock.rs
# steps a writer's wall clock with libfaketime
need=()
command -v strace >/dev/null || need+=(strace)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(faketime)
# tests/spool_space.rs makes XFS and btrfs images
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs)
# tests/hostile_targets.rs reaches a target through bindfs (a FUSE mount whose locks stay in it)
command -v bindfs >/dev/null || need+=(bindfs)
if [ ${#need[@]} != 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
fi
# --workspace: the library, cli/ (the `tributary` binary, the bench suite) and harness/
# (`tributary-torture`, the shared checker)
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# the library alone, as users build it: without the `testing` feature (the workspace
# build above turns it on through the harness), so its test seams must not leak or rot
cargo clippy -p tributary --lib -- -D warnings
# tests/ runs both binaries (tests/common/mod.rs finds them in target/release/)
cargo build --release --workspace --bins
# --no-fail-fast: one failing test binary must not hide the results of the others
cargo test --release --workspace --no-fail-fast -- --test-threads=2
