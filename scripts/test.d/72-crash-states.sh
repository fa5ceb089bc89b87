#!/usr/bin/env bash
# Crash-state enumeration (the ALICE method, issue 11 "Power loss, proven"): record the
# file-system operations of real tributary workloads under strace, materialise every
# crash state that strict POSIX and ext4 data=ordered persistence allow, run recovery
# with the real binaries on each, and check exactly-once (scripts/crash-states).
# At least 1,000 distinct states must be explored. Needs strace (installed here when
# missing and root); without it, or where ptrace is not allowed: exit 77, never a pass.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if ! command -v strace >/dev/null && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q strace >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q strace >/dev/null; } || true
fi
if ! command -v strace >/dev/null; then
  echo "SKIPPED: strace is not installed and could not be installed (not root?): no crash state was explored"
  exit 77
fi
if ! command -v python3 >/dev/null; then
  echo "SKIPPED: python3 is missing: no crash state was explored"
  exit 77
fi

cargo build --release --workspace --bins
scripts/crash-states --self-test
exec scripts/crash-states --jobs 2 --min-states 1000
