#!/usr/bin/env bash
# Crash torture, fault injection, security basics:
#  - tests/fault_injection.rs: every I/O step of the drain fails in turn (fault seam),
#    fsync failures are never trusted on retry, a real ENOSPC on a 256 KiB tmpfs (root)
#  - tests/security.rs: modes, O_EXCL|O_NOFOLLOW (seen with strace), planted symlinks
#  - tests/torture.rs: the harness passes small runs and fails on sabotaged data
#  - scripts/torture: randomized crash trials on local disk and on GlusterFS (3 mounts),
#    once with client caches off and once with Gluster's DEFAULT client caches
#    ($TRIB_TORTURE_LOCAL_TRIALS, default 300, and $TRIB_TORTURE_GLUSTER_TRIALS, default
#    150 on each volume)
# Not root: the GlusterFS trials and the ENOSPC test cannot run; exit 77 after the rest.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
LOCAL_TRIALS="${TRIB_TORTURE_LOCAL_TRIALS:-300}"
GLUSTER_TRIALS="${TRIB_TORTURE_GLUSTER_TRIALS:-150}"

root=0
[ "$(id -u)" = 0 ] && root=1
if ! command -v strace >/dev/null && [ $root = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q strace >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q strace >/dev/null; }
fi

cargo build --release --workspace --bins
cargo test --release --test fault_injection --test security --test torture -- --test-threads=2

start=$SECONDS
scripts/torture --trials "$LOCAL_TRIALS" --fs local
echo "local torture: $((SECONDS - start)) s"

if [ $root = 0 ]; then
  echo "SKIPPED (not root): the 2 x $GLUSTER_TRIALS torture trials on GlusterFS and the ENOSPC tmpfs test did NOT run"
  exit 77
fi
start=$SECONDS
scripts/torture --trials "$GLUSTER_TRIALS" --fs gluster --caches off
echo "GlusterFS torture, client caches off: $((SECONDS - start)) s (volume set-up and tear-down included)"
start=$SECONDS
scripts/torture --trials "$GLUSTER_TRIALS" --fs gluster --caches default
echo "GlusterFS torture, Gluster's default client caches: $((SECONDS - start)) s (volume set-up and tear-down included)"
echo "torture: 3 passed, 0 failed"
