//! The proof after a power cut: the target's generations against what each writer had
//! acknowledged, through the one checker, counted in a [`Tally`].

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use tributary::{Manifest, Sidecar};

use tributary_harness::check::{self, Allow};
use tributary_harness::line::Lines;

/// Everything a writer had acknowledged (at the moment that counts).
#[derive(Debug, Clone)]
pub(super) struct Acked {
    pub(super) id: u32,
    pub(super) full: bool,
    /// highest index it may ever append (a larger one is foreign)
    pub(super) lines: u64,
    /// `(index, seq)` records of its ack file
    pub(super) acked: Vec<(u64, u64)>,
}

#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    pub(super) cuts: u64,
    pub(super) acked_full: u64,
    pub(super) acked_normal: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) torn: u64,
    pub(super) out_of_order: u64,
    /// normal-durability acked lines missing after a cut (allowed)
    pub(super) normal_missing: u64,
    /// acked lines in generations deleted by retention (allowed)
    pub(super) rotated_out: u64,
    unacked_present: u64,
    /// Trials whose compactors committed manifest deltas (format 3), and of those the
    /// ones whose lock file holds delta records after recovery.
    pub(super) delta_trials: u64,
    pub(super) delta_trials_seen: u64,
    /// Trials whose compactors staged their lines, and of those the ones whose sidecar
    /// got a stage folder (a stager had lines to stage).
    pub(super) staging_trials: u64,
    pub(super) staging_trials_seen: u64,
}

impl Tally {
    pub(super) fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.torn == 0 && self.out_of_order == 0
    }
    pub(super) fn add(&mut self, o: &Tally) {
        self.cuts += o.cuts;
        self.acked_full += o.acked_full;
        self.acked_normal += o.acked_normal;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.torn += o.torn;
        self.out_of_order += o.out_of_order;
        self.normal_missing += o.normal_missing;
        self.rotated_out += o.rotated_out;
        self.unacked_present += o.unacked_present;
        self.delta_trials += o.delta_trials;
        self.delta_trials_seen += o.delta_trials_seen;
        self.staging_trials += o.staging_trials;
        self.staging_trials_seen += o.staging_trials_seen;
    }
    pub(super) fn summary(&self) -> String {
        format!(
            "acked full={} normal={}; lost={} duplicated={} torn={} out_of_order={}; normal_missing={} \
             rotated_out={} unacked_present={}",
            self.acked_full,
            self.acked_normal,
            self.lost,
            self.duplicated,
            self.torn,
            self.out_of_order,
            self.normal_missing,
            self.rotated_out,
            self.unacked_present
        )
    }
}

/// Check the target's generations (oldest first) against what was acknowledged, with
/// the one checker ([`tributary_harness::check`]): a power cut excuses missing lines of
/// `normal` writers (never of `full` ones). `header`: a pre-existing first line that
/// may be there once, first. `retention_gap`: older generations were deleted by
/// retention, so a writer's acked lines below the first one still present may be gone
/// with them.
pub(super) fn check(
    run: u64,
    files: &[Vec<u8>],
    header: Option<&[u8]>,
    writers: &[Acked],
    retention_gap: bool,
) -> Tally {
    let generations: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
    let ws: Vec<check::Writer> = writers
        .iter()
        .map(|a| check::Writer {
            id: a.id,
            lines: a.lines,
            acked: a.acked.clone(),
            // after a power cut, an acked line missing is lost whatever its journal says
            drained_seq: u64::MAX,
            full: a.full,
        })
        .collect();
    let allow = Allow { header, power_cut: true, retention_gap };
    let v = check::check(&Lines::any_bytes(run), &generations, &ws, &allow);
    Tally {
        cuts: 0,
        acked_full: v.acked - v.acked_normal,
        acked_normal: v.acked_normal,
        lost: v.lost + v.held,
        duplicated: v.duplicated,
        torn: v.torn,
        out_of_order: v.out_of_order,
        normal_missing: v.normal_missing,
        rotated_out: v.rotated_out,
        unacked_present: v.unacked_present,
        delta_trials: 0,
        delta_trials_seen: 0,
        staging_trials: 0,
        staging_trials_seen: 0,
    }
}

/// The target's generation files, oldest first, and whether a generation is missing.
pub(super) fn read_generations(target: &Path) -> Result<(Vec<Vec<u8>>, bool), String> {
    let dir = target.parent().expect("target folder");
    let name = target.file_name().expect("target name").to_string_lossy().to_string();
    let mut gens = BTreeMap::new();
    for e in fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if let Some(g) = n.strip_prefix(&format!("{name}.")).and_then(|g| g.parse::<u64>().ok()) {
            gens.insert(g, e.path());
        }
    }
    let generation = Manifest::load(&Sidecar::for_target(target)).ok().flatten().map_or(1, |m| m.generation);
    let gap = (1..generation).any(|g| !gens.contains_key(&g));
    let mut files = Vec::new();
    for p in gens.values() {
        files.push(fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?);
    }
    match fs::read(target) {
        Ok(b) => files.push(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", target.display())),
    }
    Ok((files, gap))
}

pub(super) fn manifest_epoch(target: &Path) -> u64 {
    Manifest::load(&Sidecar::for_target(target)).ok().flatten().map_or(0, |m| m.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(run: u64, ls: &[(u32, u64)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (w, i) in ls {
            v.extend_from_slice(&Lines::any_bytes(run).line(*w, *i));
            v.push(b'\n');
        }
        v
    }

    fn acked(id: u32, full: bool, acked: &[u64]) -> Acked {
        Acked { id, full, lines: 100, acked: acked.iter().map(|&i| (i, i)).collect() }
    }

    #[test]
    fn the_checker_tells_allowed_losses_from_damage() {
        let run = 9;
        let ws = [acked(1, true, &[1, 2, 3]), acked(2, false, &[1, 2])];
        let good = vec![lines(run, &[(1, 1), (2, 1), (1, 2)]), lines(run, &[(1, 3), (1, 4)])];
        let c = check(run, &good, None, &ws, false);
        assert!(c.clean(), "{c:?}");
        assert_eq!((c.normal_missing, c.unacked_present, c.acked_full), (1, 1, 3));

        let lost = vec![lines(run, &[(1, 1), (2, 1), (2, 2), (1, 3)])];
        assert_eq!(check(run, &lost, None, &ws, false).lost, 1);
        let dup = vec![lines(run, &[(1, 1), (1, 2)]), lines(run, &[(2, 2), (1, 2), (1, 3)])];
        let c = check(run, &dup, None, &ws, false);
        assert_eq!((c.duplicated, c.out_of_order), (1, 1), "{c:?}");
        let dup_normal = vec![lines(run, &[(1, 1), (2, 1), (1, 2), (2, 1), (1, 3)])];
        assert_eq!(check(run, &dup_normal, None, &ws, false).duplicated, 1);
        let mut torn = lines(run, &[(1, 1), (1, 2), (1, 3)]);
        torn.extend_from_slice(b"w1 00000004 cut sh");
        assert_eq!(check(run, &[torn], None, &ws, false).torn, 1);
        let foreign = vec![lines(run + 1, &[(1, 1)]), lines(run, &[(1, 1), (1, 2), (1, 3)])];
        assert_eq!(check(run, &foreign, None, &ws, false).torn, 1);

        // a header is allowed once, first, and nowhere else
        let mut h = b"head\n".to_vec();
        h.extend(lines(run, &[(1, 1), (1, 2), (1, 3)]));
        assert!(check(run, &[h.clone()], Some(b"head"), &ws, false).clean());
        assert_eq!(check(run, &[h], None, &ws, false).torn, 1);
        let mut late = lines(run, &[(1, 1), (1, 2), (1, 3)]);
        late.extend_from_slice(b"head\n");
        assert_eq!(check(run, &[late], Some(b"head"), &ws, false).torn, 1);

        // retention: lines below the first still present may be gone with old generations
        let kept = vec![lines(run, &[(1, 3)])];
        let c = check(run, &kept, None, &ws, true);
        assert_eq!((c.lost, c.rotated_out), (0, 4), "{c:?}"); // w1: 1, 2; w2 (none left): 1, 2
        let gap = vec![lines(run, &[(1, 1), (1, 3)])];
        assert_eq!(check(run, &gap, None, &ws, true).lost, 1);
    }
}
