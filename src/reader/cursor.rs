//! Where a reader is: [`TargetId`] and [`Cursor`], and the cursor's text form.
//!
//! Keeps: a cursor names one position of ONE target, at a line boundary; its text
//! form round-trips, and the legacy `<generation>:<offset>` form still parses (as a
//! cursor without a target id).

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::target::manifest::Manifest;
use crate::target::sidecar::Sidecar;

/// A target's identity: the `target_id` of its manifest, 16 random bytes made when the
/// target was first committed, written as 32 lower-case hex digits. A copy of the
/// target keeps it; another target (or one whose sidecar was recreated) has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(pub [u8; 16]);

impl TargetId {
    /// Parse 32 hex digits (either case); `None` otherwise.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<TargetId> {
        if s.len() != 32 {
            return None;
        }
        Some(TargetId(crate::hex::decode(s)?.try_into().ok()?))
    }

    /// The id as 32 lower-case hex digits (its text form in cursors and manifests).
    #[must_use]
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    pub(super) fn of(m: &Manifest, sidecar: &Sidecar) -> Result<TargetId> {
        TargetId::from_hex(&m.target_id).ok_or_else(|| Error::CorruptManifest {
            path: sidecar.lock.clone(),
            detail: format!("bad target_id `{}`", m.target_id),
        })
    }
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A reading position: a generation of a target and a byte offset in it, always at the
/// start of a line, and the id of the target it belongs to.
///
/// Text form (`Display`, `FromStr`): `<target_id>:<generation>:<offset>`, e.g.
/// `6f1c…e2:3:1024`. The bare `<generation>:<offset>` form of earlier versions is still
/// read, as a *legacy* cursor (`target_id: None`): nothing can check which target it
/// was kept for, so a reader accepts it on any target. A reader refuses a cursor whose
/// target id is another target's ([`ErrorKind::InvalidArgument`](crate::ErrorKind)),
/// reading nothing.
///
/// Ordering compares generation, then offset (then the id): meaningful between
/// cursors of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The generation of the target (1 for a target never rotated; 0 with offset 0:
    /// the oldest generation still kept).
    pub generation: u64,
    /// Byte offset in that generation, at the start of a line.
    pub offset: u64,
    /// The target this cursor belongs to; `None` for [`Cursor::START`], a legacy
    /// cursor, or one from a reader of a target that was never drained (no manifest,
    /// so no id yet: the reader learns it when the manifest appears).
    pub target_id: Option<TargetId>,
}

impl Cursor {
    /// The very beginning: the oldest generation still kept (resolved at open). Valid
    /// for any target.
    pub const START: Cursor = Cursor { generation: 0, offset: 0, target_id: None };

    /// A cursor with no target id (a legacy cursor: accepted by a reader of any
    /// target). Prefer keeping the cursors readers give, which carry the id.
    #[must_use]
    pub const fn at(generation: u64, offset: u64) -> Cursor {
        Cursor { generation, offset, target_id: None }
    }

    /// Generation 0, offset 0, whatever the id: the oldest generation still kept.
    #[must_use]
    pub fn is_start(&self) -> bool {
        self.generation == 0 && self.offset == 0
    }

    /// The cursor's generation and offset as `SQLite` stores them, if a reader could
    /// open at it: at most `i64::MAX` each, and generation 0 only with offset 0 (the
    /// start). Checked before a cursor is committed (a cursor store, a journal's
    /// processed cursor): `0:5` was committed and then refused at every resume (an
    /// outside tester).
    pub(crate) fn storable(&self) -> crate::Result<(i64, i64)> {
        let (Ok(generation), Ok(offset)) = (i64::try_from(self.generation), i64::try_from(self.offset)) else {
            return Err(crate::Error::InvalidArgument(format!(
                "cursor {self} is beyond any target (its generation and offset must be at most {})",
                i64::MAX
            )));
        };
        if generation == 0 && offset != 0 {
            return Err(crate::Error::InvalidArgument(format!(
                "cursor {self}: generation 0 means the oldest generation kept and needs offset 0 (a reader opens \
                 at no other); nothing was stored"
            )));
        }
        Ok((generation, offset))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(id) = &self.target_id {
            write!(f, "{id}:")?;
        }
        write!(f, "{}:{}", self.generation, self.offset)
    }
}

impl FromStr for Cursor {
    type Err = Error;

    /// `<target_id>:<generation>:<offset>`, or the legacy `<generation>:<offset>`.
    fn from_str(s: &str) -> Result<Cursor> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "cursor `{s}`: {why}; a cursor is TARGET_ID:GENERATION:OFFSET (32 hex digits and two \
                 non-negative integers, as a reader gives it) or the legacy GENERATION:OFFSET"
            ))
        };
        let number = |what: &str, t: &str| -> Result<u64> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!("bad {what} `{t}`")));
            }
            t.parse().map_err(|_| bad(&format!("{what} `{t}` is too large")))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (target_id, g, o) = match parts[..] {
            [g, o] => (None, g, o),
            [id, g, o] => (Some(TargetId::from_hex(id).ok_or_else(|| bad(&format!("bad target id `{id}`")))?), g, o),
            _ => return Err(bad("not two or three fields separated by `:`")),
        };
        let c = Cursor { generation: number("generation", g)?, offset: number("offset", o)?, target_id };
        if c.generation == 0 && c.offset != 0 {
            return Err(bad("generation 0 means the oldest generation kept and needs offset 0"));
        }
        Ok(c)
    }
}
