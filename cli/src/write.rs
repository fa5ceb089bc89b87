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
    print_seqs: bool,
}

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
        eprintln!(
            "tributary append: note: {} does not end in .journal, so `drain --spool` and `compact` never see it; \
             drain it with `drain --journal {}`, or name it *.journal",
            a.journal.display(),
            a.journal.display()
        );
    }
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
        if a.print_seqs {
            for i in 0..pending.len() as u64 {
                writeln!(out, "{}", first + i).map_err(stdout_err)?;
            }
            out.flush().map_err(stdout_err)?;
        }
        *stored += pending.len() as u64;
        pending.clear();
        Ok(())
    };
    loop {
        let mut line = Vec::new();
        let n = input.read_until(b'\n', &mut line).map_err(|e| Error::io("reading stdin", e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Err(e) = validate_line(0, &line, max) {
            let before = flush(&mut pending, &mut stored, &mut out);
            let problem = match &e {
                Error::InvalidLine { problem, .. } => problem.to_string(),
                other => other.to_string(),
            };
            before?;
            eprintln!(
                "tributary: error [invalid_line]: input line {line_no} {problem}; it was refused and appending \
                 stopped. {stored} line(s) before it were stored durably; nothing after it was read"
            );
            return Ok(ExitCode::FAILURE);
        }
        pending_bytes += line.len();
        pending.push(line);
        // Flush when nothing more is buffered (interactive input is acknowledged at
        // once) or the batch is large; one transaction per batch.
        if input.buffer().is_empty() || pending.len() >= 8192 || pending_bytes >= 8 << 20 {
            if let Err(e) = flush(&mut pending, &mut stored, &mut out) {
                return Ok(stopped_mid_stream(&e, stored));
            }
            pending_bytes = 0;
        }
    }
    if let Err(e) = flush(&mut pending, &mut stored, &mut out) {
        return Ok(stopped_mid_stream(&e, stored));
    }
    Ok(ExitCode::SUCCESS)
}

/// An append stream stopped by an error after `stored` lines were stored: say exactly
/// which input lines are durable, so a retry resends only the rest (the error's own
/// "nothing of this call was stored" is about the failed batch, not the stream).
fn stopped_mid_stream(e: &Error, stored: u64) -> ExitCode {
    eprintln!("tributary: error [{}]: {e}", e.kind().name());
    if stored == 0 {
        eprintln!("tributary: appending stopped: no input line was stored; resend from input line 1");
    } else {
        eprintln!(
            "tributary: appending stopped: {stored} line(s) (input lines 1-{stored}) were stored durably; input line \
             {} and the ones after it were not: resend from input line {}",
            stored + 1,
            stored + 1
        );
    }
    ExitCode::FAILURE
}
