//! A compactor's change test on one journal: does it hold lines past its own drained
//! record? (docs/design.md, "Which journals a daemon pass drains".)
//!
//! Keeps: the answer covers every commit whose `-wal` write happened before the probe
//! — it is read under the journal's write lock, taken without waiting, so a writer
//! between its frames and its commit makes the answer "busy", never "drained".

use std::time::Duration;

use super::{open, schema, Journal, WriteTx};
use crate::error::{Error, Result};

/// What [`Journal::probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Every line it ever held is recorded as drained, into the target named (`None`:
    /// it never held a line).
    Drained { target_id: Option<String> },
    /// It holds lines past its drained record.
    Undrained,
    /// A writer holds its write lock (mid-commit): treat as undrained.
    Busy,
}

impl Journal {
    /// The change test (see the module comment).
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the journal cannot be read; [`Error::InvalidArgument`] in
    /// a process forked from the one that opened the handle.
    pub(crate) fn probe(&self) -> Result<Probe> {
        let conn = self.lock_conn()?;
        // Not waiting: a writer holding the lock is a candidate anyway, and a pass must
        // not stall on one.
        open::set_busy_limit(Duration::ZERO);
        let began = WriteTx::begin(&conn);
        open::set_busy_limit(self.opts.busy_timeout);
        let tx = match began {
            Ok(tx) => tx,
            Err(e) if open::is_busy(&e) => return Ok(Probe::Busy),
            Err(e) => return Err(Error::sqlite(format!("probing journal {}", self.path.display()), e)),
        };
        let head =
            schema::head(&tx).map_err(|e| Error::sqlite(format!("probing journal {}", self.path.display()), e))?;
        let target_id: Option<String> = tx
            .prepare_cached("SELECT drained_target FROM state WHERE id = 1")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(|e| Error::sqlite(format!("probing journal {}", self.path.display()), e))?;
        drop(tx); // rolls back: nothing was written
        if head.next_seq.saturating_sub(1) > head.drained_seq {
            return Ok(Probe::Undrained);
        }
        Ok(Probe::Drained { target_id: target_id.filter(|_| head.drained_seq > 0) })
    }

    /// Free this handle's page cache: a journal a round has read keeps no pages while
    /// it is idle (best effort).
    pub(crate) fn release_memory(&self) {
        if let Ok(conn) = self.lock_conn() {
            let _ = conn.execute_batch("PRAGMA shrink_memory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Probe;
    use crate::journal::{Journal, JournalOptions};

    /// A writer between its WAL frames and its commit holds the write lock: the probe
    /// says "busy", never "drained" (a plain read would see the old snapshot and say
    /// drained, and no later event would mark the journal again).
    #[test]
    fn a_writer_mid_commit_makes_the_probe_busy_never_drained() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("p.journal");
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        assert_eq!(j.probe().unwrap(), Probe::Drained { target_id: None });
        j.append_batch(&[b"a", b"b"]).unwrap();
        assert_eq!(j.probe().unwrap(), Probe::Undrained);
        j.record_drained("000102030405060708090a0b0c0d0e0f", 2, 7, 9).unwrap();
        let drained = Probe::Drained { target_id: Some("000102030405060708090a0b0c0d0e0f".into()) };
        assert_eq!(j.probe().unwrap(), drained);
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE; UPDATE state SET drained_bytes = drained_bytes WHERE id = 1").unwrap();
        assert_eq!(j.probe().unwrap(), Probe::Busy);
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(j.probe().unwrap(), drained);
    }
}
