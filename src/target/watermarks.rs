//! The manifest's watermarks, one per live journal: a map whose copies share it, and
//! that knows which keys two copies of one map can differ at.
//!
//! With 10,000 journals a round copied the map three times (the intent, the chunk
//! writer, the commit), freed as many, and each delta commit compared both maps entry
//! by entry to find the few a round changed: most of a round's CPU. Here the map is a
//! shared *base*, never changed, and an *overlay* of the entries changed since (a
//! removal is an entry too); a copy shares both, and a change copies only the overlay.
//! When the overlay grows past a sixteenth of the base (at least
//! [`FOLD_AT_LEAST`] entries) it is folded into a new base: one copy of the map per
//! that many changes, instead of one per commit.
//!
//! It keeps: two maps with the same base differ only at keys of their overlays, so
//! [`Watermarks::changed_since`] names every key at which two copies can differ, or
//! says it does not know (their bases differ). Every change goes through this type's
//! methods (it gives out no `&mut` to either map), and a base is never changed.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::sync::Arc;

use super::manifest::Watermark;
use crate::journal::JournalId;

/// Overlays at most this long are never folded, however small the base.
const FOLD_AT_LEAST: usize = 64;

/// How far each journal that feeds the target is committed, by journal id.
#[derive(Clone, Default)]
pub struct Watermarks {
    /// The map as it was at the last fold (or decode); never changed.
    base: Arc<BTreeMap<JournalId, Watermark>>,
    /// Entries changed since: `Some` the watermark now, `None` removed.
    overlay: Arc<BTreeMap<JournalId, Option<Watermark>>>,
    /// Entries in the map: the base's, with the overlay's applied.
    len: usize,
}

impl Watermarks {
    /// The watermark of `id`.
    #[must_use]
    pub fn get(&self, id: &JournalId) -> Option<&Watermark> {
        match self.overlay.get(id) {
            Some(changed) => changed.as_ref(),
            None => self.base.get(id),
        }
    }

    /// Whether `id` has a watermark.
    #[must_use]
    pub fn contains_key(&self, id: &JournalId) -> bool {
        self.get(id).is_some()
    }

    /// How many watermarks there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every watermark with its journal id, in journal id order.
    #[must_use]
    pub fn iter(&self) -> Iter<'_> {
        Iter { base: self.base.iter().peekable(), overlay: self.overlay.iter().peekable() }
    }

    /// Every journal id, in order.
    pub fn keys(&self) -> impl Iterator<Item = &JournalId> {
        self.iter().map(|(id, _)| id)
    }

    /// Every watermark, in journal id order.
    pub fn values(&self) -> impl Iterator<Item = &Watermark> {
        self.iter().map(|(_, w)| w)
    }

    /// Insert or replace the watermark of `id`; the one it replaced.
    pub fn insert(&mut self, id: JournalId, w: Watermark) -> Option<Watermark> {
        self.set(id, Some(w))
    }

    /// Drop the watermark of `id`; the one dropped.
    pub fn remove(&mut self, id: &JournalId) -> Option<Watermark> {
        if !self.contains_key(id) {
            return None;
        }
        self.set(*id, None)
    }

    /// The watermark of `id`, to change in place.
    pub fn get_mut(&mut self, id: &JournalId) -> Option<&mut Watermark> {
        let w = *self.get(id)?;
        self.set(*id, Some(w));
        Arc::make_mut(&mut self.overlay).get_mut(id).and_then(Option::as_mut)
    }

    /// The keys at which this map may differ from `prev`, in order — every key where
    /// they do differ is among them — or `None` when the two do not share a base (then
    /// only a full comparison can tell).
    pub(crate) fn changed_since(&self, prev: &Watermarks) -> Option<Vec<JournalId>> {
        if !Arc::ptr_eq(&self.base, &prev.base) {
            return None;
        }
        if Arc::ptr_eq(&self.overlay, &prev.overlay) {
            return Some(Vec::new());
        }
        let mut keys: Vec<JournalId> = self.overlay.keys().chain(prev.overlay.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        Some(keys)
    }

    /// `id` set to `now` (`None`: removed) in the overlay; the watermark it had.
    fn set(&mut self, id: JournalId, now: Option<Watermark>) -> Option<Watermark> {
        let was = self.get(&id).copied();
        self.len = self.len + usize::from(now.is_some()) - usize::from(was.is_some());
        // Folded before, not after: the entry set stays in the overlay (`get_mut`).
        if self.overlay.len() >= FOLD_AT_LEAST.max(self.base.len() / 16) {
            self.fold();
        }
        let overlay = Arc::make_mut(&mut self.overlay);
        if now.is_none() && !self.base.contains_key(&id) {
            overlay.remove(&id); // never in the base: nothing to hide
        } else {
            overlay.insert(id, now);
        }
        was
    }

    /// A new base: the old one with the overlay applied; the overlay empty.
    fn fold(&mut self) {
        let base: BTreeMap<JournalId, Watermark> = self.iter().map(|(id, w)| (*id, *w)).collect();
        self.base = Arc::new(base);
        self.overlay = Arc::default();
    }
}

/// The merged view of a base and its overlay, in key order.
pub struct Iter<'a> {
    base: Peekable<std::collections::btree_map::Iter<'a, JournalId, Watermark>>,
    overlay: Peekable<std::collections::btree_map::Iter<'a, JournalId, Option<Watermark>>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a JournalId, &'a Watermark);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((o, _))) => b.cmp(o),
            };
            if order == Ordering::Less {
                return self.base.next();
            }
            if order == Ordering::Equal {
                self.base.next(); // the overlay's entry replaces it
            }
            if let Some((id, Some(w))) = self.overlay.next() {
                return Some((id, w));
            }
        }
    }
}

impl<'a> IntoIterator for &'a Watermarks {
    type Item = (&'a JournalId, &'a Watermark);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl From<BTreeMap<JournalId, Watermark>> for Watermarks {
    fn from(map: BTreeMap<JournalId, Watermark>) -> Self {
        Watermarks { len: map.len(), base: Arc::new(map), overlay: Arc::default() }
    }
}

impl PartialEq for Watermarks {
    fn eq(&self, other: &Self) -> bool {
        (Arc::ptr_eq(&self.base, &other.base) && Arc::ptr_eq(&self.overlay, &other.overlay))
            || (self.len == other.len && self.iter().eq(other.iter()))
    }
}

impl Eq for Watermarks {}

impl std::fmt::Debug for Watermarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn id(n: u16) -> JournalId {
        let mut bytes = [0; 16];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        JournalId(bytes)
    }

    fn mark(n: u16, seq: u64) -> Watermark {
        Watermark { journal_id: id(n), last_seq: seq, crc: 0, chain: 0, anchor: 0 }
    }

    /// Every key whose entry differs between the two maps, in order.
    fn differing(a: &Watermarks, b: &Watermarks) -> Vec<JournalId> {
        let keys: BTreeSet<JournalId> = a.keys().chain(b.keys()).copied().collect();
        keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
    }

    fn decoded(n: u16) -> Watermarks {
        Watermarks::from((0..n).map(|k| (id(k), mark(k, 5))).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn a_copy_names_the_keys_changed_since() {
        let prev = decoded(10);
        let mut next = prev.clone();
        assert_eq!(next.changed_since(&prev), Some(vec![]), "an unchanged copy is the same map");
        next.insert(id(3), mark(3, 6));
        next.remove(&id(7));
        next.get_mut(&id(1)).unwrap().last_seq = 9;
        next.insert(id(42), mark(42, 1));
        assert_eq!(prev.get(&id(3)), Some(&mark(3, 5)), "the copy changed, not the map it came from");
        assert_eq!(next.len(), 10);
        let changed = next.changed_since(&prev).expect("one base");
        assert_eq!(changed, vec![id(1), id(3), id(7), id(42)]);
        assert_eq!(changed, differing(&prev, &next));
        // a copy of the copy, changed again: known against either
        let mut third = next.clone();
        third.insert(id(5), mark(5, 8));
        assert_eq!(third.changed_since(&next), Some(vec![id(1), id(3), id(5), id(7), id(42)]));
        assert_eq!(differing(&next, &third), vec![id(5)]);
        // the map it came from, changed after the copy: the union names both sides
        let mut prev = prev;
        prev.insert(id(8), mark(8, 1));
        let changed = next.changed_since(&prev).unwrap();
        assert!(differing(&prev, &next).iter().all(|k| changed.contains(k)), "{changed:?}");
        assert_eq!(decoded(10).changed_since(&prev), None, "another base: not known");
    }

    /// Random changes to copies of copies, folds included: the merged view is the map a
    /// plain `BTreeMap` given the same changes holds, and a claimed list of changed keys
    /// never misses one.
    #[test]
    fn changes_and_folds_keep_the_map_and_the_changed_keys_true() {
        let mut random = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut model: BTreeMap<JournalId, Watermark> = (0..300).map(|k| (id(k), mark(k, 5))).collect();
        let mut prev = Watermarks::from(model.clone());
        let (mut claimed, mut folds) = (0, 0);
        for _ in 0..400 {
            let mut next = prev.clone();
            for _ in 0..random(12) {
                let k = u16::try_from(random(400)).unwrap();
                match random(3) {
                    0 => assert_eq!(next.remove(&id(k)), model.remove(&id(k))),
                    1 => {
                        let bump = random(2); // sometimes set to what it was
                        if let Some(w) = next.get_mut(&id(k)) {
                            w.last_seq += bump;
                        }
                        if let Some(w) = model.get_mut(&id(k)) {
                            w.last_seq += bump;
                        }
                    }
                    _ => {
                        let w = mark(k, random(9));
                        assert_eq!(next.insert(id(k), w), model.insert(id(k), w));
                    }
                }
            }
            let entries: Vec<_> = next.iter().map(|(k, w)| (*k, *w)).collect();
            let want: Vec<_> = model.iter().map(|(k, w)| (*k, *w)).collect();
            let first_difference = entries.iter().zip(&want).position(|(a, b)| a != b);
            assert!(entries == want, "the merged view differs from the model at entry {first_difference:?}");
            assert_eq!(next.len(), model.len());
            match next.changed_since(&prev) {
                Some(keys) => {
                    claimed += 1;
                    assert!(differing(&prev, &next).iter().all(|k| keys.contains(k)), "a changed key missed");
                }
                None => folds += 1,
            }
            prev = next;
        }
        assert!(claimed > 300 && folds > 0, "both paths ran: {claimed} claimed, {folds} folds");
    }
}
