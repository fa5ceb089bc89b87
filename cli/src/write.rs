//! `tributary append`: stdin's lines into a journal, in batches, each acknowledged once
//! durable; on a refused line or a failed batch, it says exactly which input lines were
//! stored so a retry resends only the rest.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tributary::{validate_line, Error, Journal};

use crate::args::JournalFlags;
use crate::{stdout_err, CmdResult};

#[derive(Args)]
pub struct AppendArgs {
    /// The journal file (created if missing) on this host's local disk.
    #[arg(long)]
    journal: PathBuf,
    #[command(flatten)]
    flags: JournalFlags,
    /// Print each stored line's seq on stdout once it is durable.
    #[arg(long)]
    pub(crate) print_seqs: bool,
}

/// A batch's bounds: lines, and bytes (or half the journal's maximum backlog, if less).
const BATCH_LINES: usize = 8192;
const BATCH_BYTES: usize = 8 << 20;

/// How many times one batch is resent to the journal opened again by its name after
/// `journal_gone` (each time, the journal was retired or replaced under it).
const REOPEN_ATTEMPTS: u32 = 20;

pub fn cmd_append(a: AppendArgs) -> CmdResult {
    let opts = a.flags.options()?;
    let max = opts.max_line_bytes;
    let mut journal = Journal::open(&a.journal, opts.clone())?;
    // A spool is its `*.journal` files: lines in another name are drained only when
    // it is named (`drain --journal`), never by `compact` (found by an outside tester).
    if a.journal.extension().is_none_or(|e| e != "journal") {
        say_err!(
            "tributary append: note: {} does not end in .journal, so `drain --spool` and `compact` never see it; \
             drain it with `drain --journal {}`, or name it *.journal",
            a.journal.display(),
            a.journal.display()
        );
    }
    // A batch never larger than half the journal's maximum backlog (when one is set):
    // one larger than the maximum could never be stored, however long it waited for
    // a drain (an outside tester: 2.6 KB of stdin under --max-backlog-bytes 1000 was
    // refused at once, every time).
    let batch_bytes = opts
        .max_backlog_bytes
        .map_or(BATCH_BYTES, |max| BATCH_BYTES.min(usize::try_from(max / 2).unwrap_or(usize::MAX)));
    let mut input = BufReader::with_capacity(1 << 20, io::stdin().lock());
    let mut out = BufWriter::new(io::stdout().lock());
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut stored = 0u64;
    let mut line_no = 0u64;
    let mut flush = |pending: &mut Vec<Vec<u8>>, stored: &mut u64, out: &mut BufWriter<_>| -> Result<(), Error> {
        if pending.is_empty() {
            return Ok(());
        }
        // A journal retired (or replaced) since it was opened: nothing of the batch was
        // stored (`journal_gone`), and the name this command was given is the journal
        // to append to — open it again and resend, as the error advises a program to.
        let mut reopened = 0;
        let first = loop {
            match journal.append_batch(pending) {
                Err(Error::JournalGone { .. }) if reopened < REOPEN_ATTEMPTS => {
                    reopened += 1;
                    journal = Journal::open(&a.journal, opts.clone())?;
                }
                r => break r?,
            }
        };
        // Stored: counted before its seqs are printed, so a stdout that fails then
        // cannot make the "resend from input line N" advice resend it (an outside
        // tester: `--print-seqs > /dev/full` said "no input line was stored").
        *stored += pending.len() as u64;
        let n = pending.len() as u64;
        pending.clear(); // its buffer kept for the next batch
        if a.print_seqs {
            for i in 0..n {
                writeln!(out, "{}", first + i).map_err(stdout_err)?;
            }
            out.flush().map_err(stdout_err)?;
        }
        Ok(())
    };
    loop {
        let mut line = Vec::new();
        let Some(whole) = read_line_bounded(&mut input, max, &mut line).map_err(|e| Error::io("reading stdin", e))?
        else {
            break;
        };
        line_no += 1;
        let refused = if whole {
            validate_line(0, &line, max).err().map(|e| match e {
                Error::InvalidLine { problem, .. } => problem.to_string(),
                other => other.to_string(),
            })
        } else {
            Some(too_long(max))
        };
        if let Some(problem) = refused {
            let before = flush(&mut pending, &mut stored, &mut out);
            before?;
            say_err!(
                "tributary: error [invalid_line]: input line {line_no} {problem}; it was refused and appending \
                 stopped. {stored} line(s) before it were stored durably; nothing after it was read"
            );
            return Ok(ExitCode::FAILURE);
        }
        // (a line that would take the batch past its bound goes into the next one)
        if !pending.is_empty() && pending_bytes + line.len() > batch_bytes {
            if let Err(e) = flush(&mut pending, &mut stored, &mut out) {
                return Ok(stopped_mid_stream(&e, stored, pending.len()));
            }
            pending_bytes = 0;
        }
        pending_bytes += line.len();
        pending.push(line);
        // Flush when nothing more is buffered (interactive input is acknowledged at
        // once) or the batch is large; one transaction per batch.
        if input.buffer().is_empty() || pending.len() >= BATCH_LINES || pending_bytes >= batch_bytes {
            if let Err(e) = flush(&mut pending, &mut stored, &mut out) {
                return Ok(stopped_mid_stream(&e, stored, pending.len()));
            }
            pending_bytes = 0;
        }
    }
    if let Err(e) = flush(&mut pending, &mut stored, &mut out) {
        return Ok(stopped_mid_stream(&e, stored, pending.len()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Read one line (without its `\n`) into `line`, holding at most `limit + 1` bytes of
/// it: `None` at the end of input, `Some(true)` for a whole line (the last one may
/// lack its `\n`), `Some(false)` for a line longer than `limit`, whose rest is not
/// read (it is refused, and appending stops). `read_until` held a line of any length
/// in memory first: input without a newline (`cat /dev/zero`) aborted the process
/// when an allocation failed (an outside tester).
fn read_line_bounded(input: &mut impl BufRead, limit: usize, line: &mut Vec<u8>) -> io::Result<Option<bool>> {
    line.clear();
    let mut read_any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(read_any.then_some(true));
        }
        read_any = true;
        let end = buf.iter().position(|&b| b == b'\n');
        let take = end.unwrap_or(buf.len());
        if line.len() + take > limit {
            let room = limit + 1 - line.len();
            line.extend_from_slice(&buf[..room.min(take)]);
            return Ok(Some(false));
        }
        line.extend_from_slice(&buf[..take]);
        input.consume(end.map_or(take, |e| e + 1));
        if end.is_some() {
            return Ok(Some(true));
        }
    }
}

/// What is wrong with a line longer than `max` whose end was not read.
fn too_long(max: usize) -> String {
    format!(
        "is longer than the maximum of {max} bytes (more than {max} bytes came before its newline; the rest was not \
         read): split it, or raise --max-line-bytes on the writers (compactors drain longer lines all the same)"
    )
}

/// An append stream stopped by an error after `stored` lines were stored: say exactly
/// which input lines are durable, so a retry resends only the rest (the error's own
/// "nothing of this call was stored" is about the failed batch, not the stream).
fn stopped_mid_stream(e: &Error, stored: u64, failed: usize) -> ExitCode {
    say_err!("tributary: error [{}]: {e}", e.kind().name());
    if e.may_have_stored() {
        // The failed batch may be replayed by SQLite's recovery when the journal is
        // next opened: resending it as "not stored" duplicated it (an outside tester).
        let (first, last) = (stored + 1, stored + failed as u64);
        say_err!(
            "tributary: appending stopped: {}input lines {first}-{last} may or may not be stored (the journal's disk \
             failed mid-commit; SQLite's recovery can still store them when the journal is next opened): once the \
             disk is repaired, drain the journal and look for them in the target (or `tributary dump --journal`) \
             before resending any of them; input line {} and the ones after it were not stored",
            if stored == 0 {
                String::new()
            } else {
                format!("{stored} line(s) (input lines 1-{stored}) were stored durably; ")
            },
            last + 1
        );
    } else if stored == 0 {
        say_err!("tributary: appending stopped: no input line was stored; resend from input line 1");
    } else {
        say_err!(
            "tributary: appending stopped: {stored} line(s) (input lines 1-{stored}) were stored durably; input line \
             {} and the ones after it were not: resend from input line {}",
            stored + 1,
            stored + 1
        );
    }
    ExitCode::FAILURE
}

#[derive(Args)]
pub struct DumpArgs {
    /// The journal file to read (never created, nothing in it changed).
    #[arg(long)]
    journal: PathBuf,
    /// Only lines after this seq (e.g. the seq the journal's copy was drained up to).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Print each line as `<seq><TAB><line>`.
    #[arg(long)]
    seqs: bool,
    /// Accept a journal on a network filesystem (only if it is really host-local).
    #[arg(long)]
    allow_network_fs: bool,
}

/// `tributary dump`: the lines a journal still stores, drained or not, changing none
/// of them — to salvage a copy that drains refuse (`journal_restored`: a clone whose
/// appends after the copy are in no target; README "Operations"). `SQLite` opens it
/// read-write (its `-shm`): a copy on a read-only medium is copied elsewhere first.
pub fn cmd_dump(a: DumpArgs) -> CmdResult {
    let opts = tributary::JournalOptions::default().allow_network_fs(a.allow_network_fs);
    let journal = Journal::open_existing(&a.journal, opts)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = |e: std::io::Error| Error::io("writing to stdout", e);
    journal.stored_lines_after(a.after, &mut |seq, line| {
        if a.seqs {
            write!(out, "{seq}\t").map_err(written)?;
        }
        out.write_all(line).and_then(|()| out.write_all(b"\n")).map_err(written)
    })?;
    out.flush().map_err(written)?;
    Ok(ExitCode::SUCCESS)
}
