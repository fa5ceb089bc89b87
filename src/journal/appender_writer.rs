//! [`AppenderWriter`]: an `io::Write` over an [`Appender`] for loggers — one pushed line
//! per `\n`-terminated line written.
//!
//! Keeps: bytes written become lines in the order written, split only at `\n`; a
//! partial line is pushed (as a line of its own) at the latest when the writer drops.

use std::sync::Arc;

use super::Appender;

/// An [`io::Write`](std::io::Write) over an [`Appender`]: each `\n`-terminated line
/// written becomes one pushed line (without its `\n`); a trailing partial line waits
/// for its newline, and is pushed as a line of its own when the writer is dropped.
/// `flush` waits until every line written so far is durable. One per thread (it holds
/// the partial line); they share the appender. For `tracing-subscriber`:
/// `fmt().with_writer(move || appender.writer())` with an `Arc<Appender>` (each event
/// is written as one line).
pub struct AppenderWriter {
    appender: Arc<Appender>,
    partial: Vec<u8>,
}

impl Appender {
    /// A line writer over this appender ([`AppenderWriter`]).
    #[must_use]
    pub fn writer(self: &Arc<Self>) -> AppenderWriter {
        AppenderWriter { appender: Arc::clone(self), partial: Vec::new() }
    }
}

impl std::io::Write for AppenderWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..at];
            let pushed = if self.partial.is_empty() {
                self.appender.push(line)
            } else {
                self.partial.extend_from_slice(line);
                let r = self.appender.push(&self.partial);
                self.partial.clear();
                r
            };
            pushed.map_err(std::io::Error::other)?;
            rest = &rest[at + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.appender.flush().map_err(std::io::Error::other)
    }
}

impl Drop for AppenderWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let _ = self.appender.push(&std::mem::take(&mut self.partial));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{AppenderOptions, Compactor, CompactorOptions};

    #[test]
    fn the_writer_pushes_one_line_per_newline_and_the_partial_one_when_dropped() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let a = Arc::new(
            Appender::open(d.path().join("a.journal"), AppenderOptions::default().window(Duration::from_secs(7200)))
                .unwrap(),
        );
        {
            let mut w = a.writer();
            write!(w, "one\ntw").unwrap();
            write!(w, "o\nthree").unwrap();
            w.flush().unwrap();
            assert_eq!(a.stats().committed, 2, "flush: the complete lines are durable");
        }
        let a = Arc::into_inner(a).expect("the writer is gone");
        a.close().unwrap();
        let target = d.path().join("out.log");
        let c = Compactor::new(&target, CompactorOptions::default().create(true)).unwrap();
        c.drain_paths(&[d.path().join("a.journal")]).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "one\ntwo\nthree\n");
    }
}
