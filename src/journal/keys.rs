//! Idempotency keys: a keyed line is stored once per key within the retention
//! window, measured on the journal's own clock.
//!
//! Keeps: a key ages only while the host is up (`CLOCK_BOOTTIME`, anchored per boot
//! in `meta`), never by a wall-clock step (docs/design.md, "Idempotency keys and the
//! journal's clock"); purges run at most once per `key_purge_interval`.

use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_ms, Journal};
use crate::error::{Error, Result};
use crate::os::sys;

impl Journal {
    pub(super) fn key_purge_due(&self) -> bool {
        self.maintenance.lock().last_key_purge.elapsed() >= self.opts.key_purge_interval
    }

    pub(super) fn maybe_purge_keys(&self, tx: &Connection) -> Result<()> {
        let mut m = self.maintenance.lock();
        if m.last_key_purge.elapsed() < self.opts.key_purge_interval {
            return Ok(());
        }
        m.last_key_purge = Instant::now();
        let retention = i64::try_from(self.opts.key_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Self::key_clock(tx)?.saturating_sub(retention);
        tx.execute("DELETE FROM idempotency WHERE added_ms < ?1", params![cutoff])
            .map_err(|e| Error::sqlite("purging expired idempotency keys", e))?;
        Ok(())
    }

    /// Record this writer's key retention in the journal (`meta.key_retention_ms`,
    /// the largest any writer used): a retirement judges the keys by it — a key lives
    /// as long as its writer keeps it — and not by the compactor's own setting
    /// (docs/design.md "Journal lifecycle", rule 6). In the keyed commit's transaction.
    pub(super) fn record_key_retention(&self, tx: &Connection) -> Result<()> {
        let retention = i64::try_from(self.opts.key_retention.as_millis()).unwrap_or(i64::MAX);
        tx.prepare_cached(
            "INSERT INTO meta(key, value) VALUES ('key_retention_ms', ?1)
             ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
        )
        .and_then(|mut st| st.execute(params![retention]))
        .map_err(|e| Error::sqlite("recording the key retention", e))?;
        Ok(())
    }

    /// The journal's clock for idempotency keys, in ms (docs/design.md, "Idempotency
    /// keys and the journal's clock"): `CLOCK_BOOTTIME` anchored per boot in `meta`, so
    /// a wall-clock step never ages a key. Call inside a write transaction: it
    /// refreshes the anchor to this moment (so the next boot resumes from here).
    pub(super) fn key_clock(tx: &Connection) -> Result<i64> {
        let (boot, uptime, now) = Self::key_clock_now(tx)?;
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('key_clock', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![format!("{boot} {uptime} {now}")],
        )
        .map_err(|e| Error::sqlite("recording the key clock", e))?;
        Ok(now)
    }

    /// The journal's key clock now, read only: (boot id, boot time, clock ms).
    fn key_clock_now(tx: &Connection) -> Result<(String, i64, i64)> {
        let (boot, uptime) = (sys::boot_id(), sys::boottime_ms());
        let stored: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'key_clock'", [], |r| r.get(0))
            .optional()
            .map_err(|e| Error::sqlite("reading the key clock", e))?;
        let parsed = stored.as_deref().and_then(|v| {
            let mut it = v.split(' ');
            let (b, up, clock) = (it.next()?, it.next()?.parse::<i64>().ok()?, it.next()?.parse::<i64>().ok()?);
            Some((b.to_string(), up, clock))
        });
        let now = match parsed {
            // this boot: the time up since the anchor (never negative)
            Some((b, up, clock)) if !boot.is_empty() && b == boot => clock + (uptime - up).max(0),
            // a new boot: resume where the last one left off (downtime not counted)
            Some((_, _, clock)) => clock,
            // a journal whose keys were stamped with wall time: continue from it
            None => now_ms(),
        };
        Ok((boot, uptime, now))
    }

    /// What a retirement of this journal would forget (docs/design.md "Journal
    /// lifecycle", rule 6): idempotency keys still within `retention` on the journal's
    /// own clock, and processed cursors. `None` when nothing.
    ///
    /// # Errors
    /// [`Error::Sqlite`] reading the journal.
    pub(crate) fn retirement_would_forget(&self, retention: std::time::Duration) -> Result<Option<Held>> {
        let conn = self.lock_conn()?;
        self.would_forget_on(&conn, retention)
    }

    /// The refusal of a retirement that would forget `held` (what
    /// [`retirement_would_forget`](Self::retirement_would_forget) said).
    pub(crate) fn retirement_refused(&self, held: &Held) -> Error {
        let (who, when) = match (&held.keys, &held.cursors) {
            (Some(_), None) => ("a writer resending with one of those keys", "its writers cannot resend"),
            (None, Some(_)) => ("a processor resuming from its cursor", "its processor has finished"),
            _ => (
                "a writer resending with one of those keys, or a processor resuming from its cursor,",
                "its writers cannot resend and its processor has finished",
            ),
        };
        Error::InvalidArgument(format!(
            "journal {} holds {held}: retiring it deletes them with it, and {who} would then store lines twice. \
             Retire it once {when}, or forgetting them now: `tributary retire --forget-keys`, \
             Compactor::retire_forgetting_keys, trib_retire_forgetting_keys, retire(..., forget_keys=True) in \
             Python, DrainOptions.ForgetKeys in Go. It was not retired",
            self.path.display()
        ))
    }

    /// [`retirement_would_forget`](Self::retirement_would_forget) on `conn`: this
    /// handle's connection, taken already (a retirement checks again under the
    /// journal's write lock, right before it deletes).
    pub(super) fn would_forget_on(&self, conn: &Connection, retention: std::time::Duration) -> Result<Option<Held>> {
        let ctx = |what: &str| format!("{what} of journal {}", self.path.display());
        let (keys, newest): (i64, Option<i64>) = conn
            .query_row("SELECT COUNT(*), MAX(added_ms) FROM idempotency", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| Error::sqlite(ctx("reading the idempotency keys"), e))?;
        let mut held = Held { keys: None, cursors: None };
        if let Some(newest) = newest {
            let (_, _, now) = Self::key_clock_now(conn)?;
            // How long its writers keep a key (the longest any used): a key lives that
            // long, whatever this compactor's setting, which stands in only for a
            // journal whose writers predate the record.
            let writers_ms: Option<i64> = conn
                .query_row("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'key_retention_ms'", [], |r| r.get(0))
                .optional()
                .map_err(|e| Error::sqlite(ctx("reading the writers' key retention"), e))?;
            let retention_ms = writers_ms.unwrap_or_else(|| i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            let left_ms = newest.saturating_add(retention_ms).saturating_sub(now);
            if left_ms > 0 {
                held.keys = Some(format!(
                    "{keys} idempotency key(s), the newest kept {} more (its writers keep keys {}, on the \
                     journal's clock)",
                    rounded_up(u64::try_from(left_ms).unwrap_or(0)),
                    rounded_up(u64::try_from(retention_ms).unwrap_or(0))
                ));
            }
        }
        let has_cursors: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cursors')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| Error::sqlite(ctx("looking for processed cursors"), e))?;
        if has_cursors {
            let names: Vec<String> = conn
                .prepare("SELECT name FROM cursors ORDER BY name")
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                .map_err(|e| Error::sqlite(ctx("reading the processed cursors"), e))?;
            if !names.is_empty() {
                held.cursors = Some(format!("processed cursor(s) for {}", names.join(", ")));
            }
        }
        Ok((held.keys.is_some() || held.cursors.is_some()).then_some(held))
    }
}

/// What a retirement of a journal would forget (rule 6): its live keys, its cursors.
pub(crate) struct Held {
    keys: Option<String>,
    cursors: Option<String>,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = [&self.keys, &self.cursors].into_iter().flatten().map(String::as_str).collect();
        f.write_str(&parts.join(" and "))
    }
}

/// `ms` for a person: whole hours, else minutes, else seconds, rounded up.
fn rounded_up(ms: u64) -> String {
    match ms {
        ms if ms >= 3_600_000 => format!("{} h", ms.div_ceil(3_600_000)),
        ms if ms >= 60_000 => format!("{} min", ms.div_ceil(60_000)),
        ms => format!("{} s", ms.div_ceil(1000)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::journal::{Journal, JournalOptions};

    #[test]
    fn a_huge_key_retention_keeps_keys_instead_of_wrapping_around() {
        let d = tempfile::tempdir().unwrap();
        let opts = JournalOptions { key_retention: Duration::MAX, ..Default::default() };
        let j = Journal::open(d.path().join("k.journal"), opts).unwrap();
        let first = j.append_keyed(b"key", b"once").unwrap();
        // Make the next append run the (normally once a minute) key purge.
        j.maintenance.lock().last_key_purge = Instant::now().checked_sub(Duration::from_secs(120)).unwrap();
        j.append(b"other").unwrap();
        assert_eq!(j.append_keyed(b"key", b"again").unwrap(), first, "the key was purged");
        assert_eq!(j.backlog().unwrap().lines, 2);
    }
}
