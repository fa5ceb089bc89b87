//! The flags several subcommands share, and what they become: `JournalFlags` (a
//! journal's options, for `append`), `CompactorFlags` (a `Compactor`, for `drain`,
//! `compact` and `retire`), and the check that a `--target` exists (`status`, `tail`).

use std::path::Path;
use std::time::Duration;

use clap::Args;
use tributary::{Compactor, CompactorOptions, Durability, Error, JournalOptions};

#[derive(Args)]
pub struct JournalFlags {
    /// `full` (fsync before acknowledging, the default) or `normal` (survives a crash
    /// of the process, not of the machine).
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    durability: String,
    /// Longest accepted line in bytes.
    #[arg(long, default_value_t = tributary::DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Refuse appends past this many undrained bytes ("journal full").
    #[arg(long)]
    max_backlog_bytes: Option<u64>,
    /// With --max-backlog-bytes: wait up to this long for room before failing.
    #[arg(long)]
    full_wait_ms: Option<u64>,
    /// Accept a journal on a network filesystem (only if it is really host-local).
    #[arg(long)]
    allow_network_fs: bool,
}

impl JournalFlags {
    pub fn options(&self) -> Result<JournalOptions, Error> {
        Ok(JournalOptions::default()
            .durability(self.durability.parse::<Durability>()?)
            .max_line_bytes(self.max_line_bytes)
            .max_backlog_bytes(self.max_backlog_bytes)
            .full_wait(self.full_wait_ms.map(Duration::from_millis))
            .allow_network_fs(self.allow_network_fs))
    }
}

#[derive(Args)]
pub struct CompactorFlags {
    /// Most bytes one drain round writes (a round that waited for another compactor's
    /// lock: at most 4 MiB, so every host waiting gets its turn soon).
    #[arg(long, default_value_t = 64 << 20)]
    max_round_bytes: u64,
    /// Stop adding lines to a round after this many milliseconds (a round that waited
    /// for another compactor's lock: at most 100).
    #[arg(long, default_value_t = 2000)]
    max_round_ms: u64,
    /// How long to wait for the target's lock.
    #[arg(long, default_value_t = 30_000)]
    lock_timeout_ms: u64,
    /// Longest line any writer may append (bounds how long an uncommitted tail can be).
    #[arg(long, default_value_t = tributary::DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Accept journals on a network filesystem (only if it is really host-local).
    #[arg(long)]
    allow_network_fs: bool,
    /// Managed rotation: start a new generation of the target once it holds this many
    /// committed bytes; the old one is renamed to <target>.<generation>.
    #[arg(long)]
    rotate_bytes: Option<u64>,
    /// Managed rotation by committed line count.
    #[arg(long)]
    rotate_lines: Option<u64>,
    /// Keep only this many rotated generations, at least 1 (older ones are deleted;
    /// without it every one is kept).
    #[arg(long)]
    retain: Option<u64>,
    /// Create the target if it does not exist yet (as `init` does). Without it, a
    /// target that was never initialised — or whose share is not mounted — is refused.
    #[arg(long)]
    create: bool,
    /// Most journals open at once (3 file descriptors each); more are drained in turns.
    #[arg(long, default_value_t = 128)]
    max_open_journals: usize,
    /// UNSAFE, tests only: the multi-host negative control (slots and the target's size
    /// read through the client's caches, the shape tributary had before it was safe on
    /// default NFS/GlusterFS caches). Loses and duplicates lines on such mounts.
    #[arg(long, hide = true)]
    unsafe_trust_client_caches: bool,
    /// Seconds a retired journal's entry stays in the manifest, counted from its first
    /// line; then the target's horizon moves past it (docs/design.md "Journal lifecycle
    /// and watermark expiry").
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    watermark_expiry: u64,
}

impl CompactorFlags {
    pub fn compactor(&self, target: &Path) -> Result<Compactor, Error> {
        Compactor::new(
            target,
            CompactorOptions::default()
                .max_round_bytes(self.max_round_bytes)
                .max_round_time(Duration::from_millis(self.max_round_ms))
                .lock_timeout(Duration::from_millis(self.lock_timeout_ms))
                .journal(
                    JournalOptions::default()
                        .allow_network_fs(self.allow_network_fs)
                        .max_line_bytes(self.max_line_bytes),
                )
                .rotate_bytes(self.rotate_bytes)
                .rotate_lines(self.rotate_lines)
                .retain_generations(self.retain)
                .max_open_journals(self.max_open_journals.max(1))
                .watermark_expiry(Duration::from_secs(self.watermark_expiry))
                .create(self.create),
        )
        .map(|c| if self.unsafe_trust_client_caches { c.trusting_client_caches_unsafely() } else { c })
    }
}

/// `tail` and `status` on a target that does not exist and was never drained printed
/// nothing and exited 0 (`tail --follow` waited forever): a typo, or an unmounted share.
pub fn existing_target(t: &Path) -> Result<(), Error> {
    if !t.exists() && !tributary::Sidecar::for_target(t).manifest.exists() {
        return Err(Error::InvalidArgument(format!(
            "target {} does not exist and was never drained: check the path (is the share mounted?)",
            t.display()
        )));
    }
    Ok(())
}
