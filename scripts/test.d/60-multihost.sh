#!/usr/bin/env bash
# Multi-host proof on a real shared filesystem: a GlusterFS volume mounted 3 times (3
# FUSE clients = 3 hosts, cross-mount OFD locks) with client caches off, and a second
# volume mounted 3 times with Gluster's DEFAULT client caches. Runs tests/multihost.rs
# against them: on each volume, 2 and 3 hosts with writers + a compact daemon each
# under random SIGKILLs (exactly once, per-writer order, nothing torn, verify clean and
# tributary Readers identical through every mount); on the default-cache volume also
# the negative control (the pre-rule-6 shape must lose lines there) and readers on the
# host of a compactor killed mid-round (never its bytes from cached pages), hosts that
# still know a target's old name after another host's rotation (complete or interrupted),
# and a small target's old content cached by quick-read, readers on other hosts
# started before `init` and followers while retention deletes generations; a SIGSTOPped lock
# holder (LockTimeout, never a hang), the lock premise across mounts, journals refused
# on the mount.
# Also checks that scripts/glusterfs-up/down are idempotent and repair a lost mount.
# Needs root (FUSE mounts, glusterd); without it: exit 77 naming what was not run.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED (not root): GlusterFS cannot be mounted, so these tests did NOT run:"
  echo "  tests/multihost.rs: two_hosts_on_glusterfs_random_sigkills_exactly_once,"
  echo "  three_hosts_on_glusterfs_random_sigkills_exactly_once, a_hung_lock_holder_gives_others_a_lock_timeout_never_a_hang,"
  echo "  the_target_lock_is_enforced_across_mounts, a_journal_on_the_gluster_mount_is_refused,"
  echo "  two_hosts_on_default_gluster_caches_random_sigkills_exactly_once, three_hosts_on_default_gluster_caches_…,"
  echo "  the_old_shape_on_default_gluster_caches_loses_lines_negative_control,"
  echo "  readers_on_the_host_of_a_killed_compactor_read_the_committed_bytes_not_its_tail,"
  echo "  a_rotation_on_another_host_misleads_nothing_on_a_host_that_still_knows_the_old_name,"
  echo "  a_rotation_interrupted_on_another_host_is_completed_by_a_host_that_still_knows_the_old_name,"
  echo "  a_small_targets_old_content_cached_here_misleads_neither_verify_nor_a_cursor,"
  echo "  readers_started_before_init_on_other_hosts_read_the_new_target,"
  echo "  followers_on_other_hosts_read_through_retention_on_default_caches; and the glusterfs-up/down checks."
  echo "  Run scripts/test-all as root (CI does)."
  exit 77
fi

BASE=/mnt/trib
NC_BASE=/mnt/tribnc
down() {
  GLUSTER_VOLUME=tribnc scripts/glusterfs-down --purge "$NC_BASE" || true
  scripts/glusterfs-down --purge "$BASE" || true
}
trap down EXIT

passed=0
failed=0
check() { # check NAME CMD...: a script-level check, counted in the closing line
  local name="$1"; shift
  if "$@"; then echo "ok: $name"; passed=$((passed + 1)); else echo "FAILED: $name"; failed=$((failed + 1)); fi
}

# build first, so the volume is not up while cargo works
cargo build --release --workspace --bins
cargo test --release --test multihost --no-run

start=$SECONDS
mounts="$(scripts/glusterfs-up 3 "$BASE" | paste -sd, -)"
echo "coherent volume up in $((SECONDS - start)) s: $mounts"

# glusterfs-up is idempotent and repairs a lost mount
again="$(scripts/glusterfs-up 3 "$BASE" 2>/dev/null | paste -sd, -)"
check "glusterfs-up again is a no-op with the same mounts" test "$again" = "$mounts"
umount "$BASE/node3"
repaired="$(scripts/glusterfs-up 3 "$BASE" 2>/dev/null | paste -sd, -)"
check "glusterfs-up remounts a lost mount" sh -c "test '$repaired' = '$mounts' && stat -f -c %T '$BASE/node3' | grep -q fuse"
echo probe >"$BASE/node1/.probe-$$"
check "a file written through node1 is read through node3" test "$(cat "$BASE/node3/.probe-$$")" = probe
rm -f "$BASE/node1/.probe-$$"

start=$SECONDS
nc_mounts="$(GLUSTER_VOLUME=tribnc GLUSTER_COHERENT=0 scripts/glusterfs-up 3 "$NC_BASE" | paste -sd, -)"
echo "default-cache volume (Gluster's default client caches) up in $((SECONDS - start)) s: $nc_mounts"

report="$(mktemp)"
set +e
TRIB_GLUSTER_MOUNTS="$mounts" TRIB_GLUSTER_DEFAULT_MOUNTS="$nc_mounts" TRIB_MULTIHOST_REPORT="$report" \
  cargo test --release --test multihost -- --test-threads=1 --nocapture
rc=$?
set -e
echo
echo "--- multi-host report"
cat "$report"
rm -f "$report"

# glusterfs-down twice: the second run is a no-op
check "glusterfs-down (default-cache volume)" env GLUSTER_VOLUME=tribnc scripts/glusterfs-down --purge "$NC_BASE"
check "glusterfs-down (coherent volume)" scripts/glusterfs-down --purge "$BASE"
check "glusterfs-down again is a no-op" scripts/glusterfs-down --purge "$BASE"
check "nothing of the volumes is mounted any more" sh -c "! grep -qE ' ($BASE|$NC_BASE)/' /proc/mounts"
trap - EXIT

echo "glusterfs script checks: $passed passed, $failed failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
