//! The keyed writer loop of the demo's and the harness's writer children (`tributary
//! demo-writer`, `tributary-torture writer`): appends lines `1..=lines` of a run to its
//! journal in keyed batches and records each acknowledged batch in its ack file.
//!
//! A restarted writer resumes after its last acknowledged line and re-sends the rest
//! under the same keys (`w<writer>-<index>`), so a batch that was committed but not
//! acknowledged (killed in between) is stored once, under its first seq.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tributary::{Appender, AppenderOptions, Durability, Error, Journal, JournalOptions, Pushed};

use crate::ack::{self, AckFile};
use crate::line::Lines;
use crate::rng::{mix, Rng};

/// One writer child's job.
#[derive(Debug, Clone)]
pub struct Writer {
    pub journal: PathBuf,
    pub ack: PathBuf,
    /// The writer's id, `w` in its lines and keys.
    pub writer: u32,
    /// Lines to append in all (line indexes `1..=lines`).
    pub lines: u64,
    /// The run's lines (their bytes).
    pub set: Lines,
    /// Lines per second at most (0 = as fast as it can), paced from this process's start.
    pub rate: u64,
    /// Largest batch (one transaction, one ack write); each batch is 1..=max_batch lines.
    pub max_batch: u64,
    pub durability: Durability,
    /// Open the journal for each batch and close it after: a short-lived writer, whose
    /// close (the last one) checkpoints and removes the `-wal`, so a drain finds it
    /// empty (docs/design.md steps 4 and 7 skip fsyncs there).
    pub reopen: bool,
    /// Push each line to an [`Appender`] (background commit) and acknowledge a batch
    /// once `flush` returned. Not restartable: it re-sends without keys, so a batch
    /// committed but not acknowledged would be stored twice — only the power-cut
    /// harness, which never restarts a writer, uses it.
    pub appender: bool,
}

/// Where a writer's batches go: a journal (keyed batches, each line's seq), or an
/// [`Appender`] (pushed, then flushed).
enum Sink {
    /// The handle kept between batches (`None` with `reopen`: opened for each).
    Journal(Option<Box<Journal>>),
    Appender(Appender),
}

impl Writer {
    /// Append every line not acknowledged yet; `Ok` once all are.
    pub fn run(&self) -> tributary::Result<()> {
        let opts = JournalOptions::default().durability(self.durability);
        let mut sink = if self.appender {
            Sink::Appender(Appender::open(&self.journal, AppenderOptions::default().journal(opts.clone()))?)
        } else {
            Sink::Journal(Some(Box::new(Journal::open(&self.journal, opts.clone())?)))
        };
        let mut acks = AckFile::open(&self.ack).map_err(|e| Error::io(format!("opening {}", self.ack.display()), e))?;
        // batch sizes differ from life to life (the random part): restarts cut elsewhere
        let mut rng = Rng::new(mix(self.set.run, u64::from(self.writer) ^ tributary::testing::sys::random_u64()));
        let mut i = ack::last_index(&self.ack) + 1;
        let (started, first) = (Instant::now(), i);
        let mut last_seq = 0u64;
        while i <= self.lines {
            if self.rate > 0 {
                let due = Duration::from_secs_f64((i - first) as f64 / self.rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let n = (1 + rng.below(self.max_batch.max(1))).min(self.lines - i + 1);
            let acked = match &mut sink {
                Sink::Journal(journal) => self.append_keyed(journal, &opts, i..i + n, &mut last_seq)?,
                Sink::Appender(appender) => self.push_and_flush(appender, i..i + n)?,
            };
            // one write(2) per batch: a SIGKILL cannot tear it
            acks.record(&acked).map_err(|e| Error::io("writing the ack file", e))?;
            i += n;
        }
        match sink {
            Sink::Appender(appender) => appender.close(),
            Sink::Journal(_) => Ok(()),
        }
    }

    /// Lines `batch` as one keyed batch: each line's `(index, seq)`.
    fn append_keyed(
        &self,
        journal: &mut Option<Box<Journal>>,
        opts: &JournalOptions,
        batch: std::ops::Range<u64>,
        last_seq: &mut u64,
    ) -> tributary::Result<Vec<(u64, u64)>> {
        let items: Vec<(Vec<u8>, Vec<u8>)> = batch
            .clone()
            .map(|k| (format!("w{}-{k}", self.writer).into_bytes(), self.set.line(self.writer, k)))
            .collect();
        let open = match journal.take() {
            Some(j) => j,
            None => Box::new(Journal::open(&self.journal, opts.clone())?),
        };
        let seqs = open.append_batch_keyed(&items)?;
        if !self.reopen {
            *journal = Some(open);
        }
        let mut acked = Vec::with_capacity(seqs.len());
        for (k, seq) in batch.zip(seqs) {
            // seqs of one writer's lines only ever grow (a re-sent key keeps its first seq)
            if seq <= *last_seq {
                return Err(Error::InvalidArgument(format!(
                    "journal returned seq {seq} for line {k}, not above the previous {last_seq}"
                )));
            }
            *last_seq = seq;
            acked.push((k, seq));
        }
        Ok(acked)
    }

    /// [`Writer::appender`]: lines `batch` pushed, then flushed; `(index, index)` each
    /// (an appender returns no seq, and power-cut checks do not use it).
    fn push_and_flush(&self, appender: &Appender, batch: std::ops::Range<u64>) -> tributary::Result<Vec<(u64, u64)>> {
        for k in batch.clone() {
            if appender.push(&self.set.line(self.writer, k))? == Pushed::Dropped {
                return Err(Error::InvalidArgument(format!("line {k} was dropped: the appender blocks by default")));
            }
        }
        appender.flush()?;
        Ok(batch.map(|k| (k, k)).collect())
    }
}
