//! `tributary-torture`: the crash-torture and multi-host harness of tributary.
//!
//! ```text
//! tributary-torture trials --trials 2000 [--fs local|gluster --mounts M1,M2,M3] [--seed S [--trial K]]
//! tributary-torture multihost --mounts M1,M2[,M3] [--kills 40] [--seed S] [--incoherent]
//! tributary-torture powercut [--fs ext4|xfs|all] [--cuts 40] [--seed S [--trial K]] [--bin-dir DIR]
//! tributary-torture soak --target T --dir D [--fill DIR] [--remount-cmd CMD] [--writers 3 --lines 3000]
//! ```
//! It drives the `tributary` CLI (next to this executable) and its own `writer`
//! children, kills them at random moments and at every drain failpoint, and then
//! checks that every acknowledged line is in the target exactly once. Every run prints
//! its seed; the same seed replays the same plan (which process is killed, when, at
//! which failpoint); the operating system's scheduling still varies between runs.
//! `scripts/torture` wraps the trials (and brings a GlusterFS volume up for them).

mod common;
mod multihost;
mod powercut;
mod soak;
mod trials;
mod writer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tributary-torture", about = "Crash torture and multi-host proof for tributary")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Randomized crash trials (writers and drains killed at random moments and failpoints).
    Trials(trials::TrialsArgs),
    /// Multi-host soak: one host per mount, writers + a compact daemon each, random SIGKILLs.
    Multihost(multihost::MultihostArgs),
    /// Real power cuts (FS_IOC_SHUTDOWN) of an ext4/xfs loop-device filesystem, then recovery and the proof.
    Powercut(powercut::PowercutArgs),
    /// A compact daemon under faults (writer kills, a full target disk, junk journals, remounts): it must never exit.
    Soak(soak::SoakArgs),
    /// (child) one writer process: keyed appends with an ack file.
    Writer(writer::WriterArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Trials(a) => trials::run(a),
        Cmd::Multihost(a) => multihost::run(a),
        Cmd::Powercut(a) => powercut::run(a),
        Cmd::Soak(a) => soak::run(a),
        Cmd::Writer(a) => writer::run(a),
    }
}
