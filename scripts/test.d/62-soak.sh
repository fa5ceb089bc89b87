#!/usr/bin/env bash
# The daemon soak (issue 13): a `tributary compact` daemon drains keyed writers while
# the harness SIGKILLs writers, drops junk and half-created *.journal files into the
# spool, fills the target's disk and frees it (a 16 MiB tmpfs), and restarts the
# target's GlusterFS client (umount -l + mount). The daemon must never exit, every
# acknowledged line must be in the target exactly once, SIGTERM must stop it with 0.
# Needs root (tmpfs and FUSE mounts); without it: exit 77 naming what was not run.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED (not root): the daemon soak needs a tmpfs and GlusterFS mounts; it did NOT run"
  exit 77
fi
cargo build --release --workspace --bins
T=target/release/tributary-torture
work=$(mktemp -d)
fs="$work/targetfs"
mkdir -p "$fs"
VOL=tribsoak BASE=/mnt/tribsoak
cleanup() {
  umount "$fs" 2>/dev/null || true
  GLUSTER_VOLUME=$VOL scripts/glusterfs-down --purge "$BASE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== soak 1: a full target disk (16 MiB tmpfs) filled and freed, junk journals, writer kills"
mount -t tmpfs -o size=16m tmpfs "$fs"
"$T" soak --target "$fs/events.log" --dir "$work/run1" --fill "$fs" --writers 3 --lines 6000 --rate 300

echo "== soak 2: the target's GlusterFS client restarted under the daemon, junk journals, writer kills"
GLUSTER_VOLUME=$VOL scripts/glusterfs-up 1 "$BASE" >/dev/null
mkdir -p "$BASE/node1/soak"
"$T" soak --target "$BASE/node1/soak/events.log" --dir "$work/run2" --writers 3 --lines 6000 --rate 300 \
  --remount-cmd "if mountpoint -q $BASE/node1; then umount -l $BASE/node1; fi && GLUSTER_VOLUME=$VOL scripts/glusterfs-up 1 $BASE"
echo "soak: both runs passed"
