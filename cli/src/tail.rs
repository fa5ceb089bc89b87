//! `tributary tail`: committed lines only, from an offset, a cursor or the oldest
//! generation, optionally following the target; with `--cursor-store`, a durable cursor
//! committed only past lines the consumer has read (at-least-once, never a skip).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use tributary::{Cursor, CursorStore, Error, Reader};

use crate::args::existing_target;
use crate::{stdout_err, CmdResult};

#[derive(Args)]
pub struct TailArgs {
    /// The shared target file (on the shared filesystem; its sidecar is `<target>.tributary/`)
    #[arg(long)]
    target: PathBuf,
    /// Byte offset in the current generation to start from (0, or the start of a line).
    /// With --cursor-store, a start given here (or --cursor, --all) is used instead of
    /// the stored cursor, which then moves on from it.
    #[arg(long, conflicts_with_all = ["cursor", "all"])]
    from: Option<u64>,
    /// A cursor TARGET_ID:GENERATION:OFFSET kept from an earlier read (survives
    /// rotations; refused on another target). The bare GENERATION:OFFSET of earlier
    /// versions is still accepted, unchecked.
    #[arg(long, value_parser = parse_cursor, conflicts_with = "all")]
    cursor: Option<Cursor>,
    /// Start at the oldest generation still kept (managed rotation), not the current one.
    #[arg(long)]
    all: bool,
    /// Keep a durable cursor in this local SQLite file (with --name): start where the
    /// last run committed, and commit after printed lines are flushed (at-least-once).
    #[arg(long, requires = "name")]
    cursor_store: Option<PathBuf>,
    /// The cursor's name in --cursor-store.
    #[arg(long, requires = "cursor_store")]
    name: Option<String>,
    /// Keep waiting for newly committed lines until SIGINT/SIGTERM/SIGHUP.
    #[arg(long)]
    follow: bool,
    /// Stop after printing this many lines (and commit the cursor right after them):
    /// use it instead of `| head -N`, which reads more than it prints, so a cursor
    /// committed behind it would skip the lines head read and dropped.
    #[arg(long)]
    max_lines: Option<u64>,
    /// How often --follow polls the manifest, in milliseconds.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
}

fn parse_cursor(s: &str) -> Result<Cursor, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

pub fn cmd_tail(a: TailArgs) -> CmdResult {
    crate::os::install_stop_handlers();
    existing_target(&a.target)?;
    let store = match (&a.cursor_store, &a.name) {
        (Some(p), Some(n)) => Some((CursorStore::open(p)?, n.clone())),
        _ => None,
    };
    if store.is_some() {
        if let Some(why) = crate::os::unread_unknowable(&io::stdout()) {
            return Err(Error::InvalidArgument(format!(
                "{why}: tail cannot tell which lines its reader has taken, so a cursor committed behind it could \
                 skip lines (at-least-once would not hold). Write to a pipe, a Unix socket or a file, or drop \
                 --cursor-store"
            )));
        }
    }
    let stored = match &store {
        Some((st, name)) => st.get(name)?,
        None => None,
    };
    // A start given on the command line wins over the stored cursor: it is how to move
    // a stored cursor (the retention error's "reopen from the start" was impossible:
    // the flags were accepted and silently ignored — an outside tester).
    let explicit = a.cursor.is_some() || a.all || a.from.is_some();
    if let (Some(c), true) = (&stored, explicit) {
        say_err!("tributary tail: starting where the command line says, not at the stored cursor {c}; the store moves on from here");
    }
    // Resuming from the stored cursor: the first line written may be one a killed run
    // had begun to write (checked then).
    let mut resuming = stored.filter(|_| !explicit);
    let mut reader = match (resuming, a.cursor, a.all) {
        (Some(c), _, _) => Reader::open_at(&a.target, c)?,
        (None, Some(c), _) => Reader::open_at(&a.target, c)?,
        (None, None, true) => Reader::open_at(&a.target, Cursor::START)?,
        (None, None, false) if store.is_some() && a.from.is_none() => Reader::open_at(&a.target, Cursor::START)?,
        (None, None, false) => Reader::open(&a.target, a.from.unwrap_or(0))?,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let poll = Duration::from_millis(a.poll_ms.max(1));
    let mut unflushed = 0usize;
    // The cursor is committed only past lines the consumer has read: flushed to stdout,
    // and — when stdout is a pipe — taken out of the pipe by its reader (`| head -3`
    // must not commit the lines left in the pipe when head exits). A crash in between
    // replays lines (at-least-once), never skips them.
    let mut written = 0u64;
    let mut sent: std::collections::VecDeque<(u64, Cursor)> = Default::default();
    let checkpoint = |out: &mut BufWriter<_>,
                      sent: &mut std::collections::VecDeque<(u64, Cursor)>,
                      written: u64,
                      last: bool|
     -> Result<bool, Error> {
        match out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(false),
            Err(e) => return Err(stdout_err(e)),
            Ok(()) => {}
        }
        let stdout = io::stdout();
        let mut unread = crate::os::pipe_unread(&stdout).unwrap_or(0);
        // At the end, give the consumer a few seconds to read what is in the pipe.
        let until = Instant::now() + Duration::from_secs(5);
        while last && unread > 0 && !crate::os::pipe_reader_gone(&stdout) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
            unread = crate::os::pipe_unread(&stdout).unwrap_or(0);
        }
        let consumed = written.saturating_sub(unread);
        let mut commit = None;
        while sent.front().is_some_and(|(end, _)| *end <= consumed) {
            commit = sent.pop_front().map(|(_, c)| c);
        }
        if let (Some((st, name)), Some(c)) = (&store, commit) {
            st.commit(name, c)?;
        }
        Ok(true)
    };
    let mut printed = 0u64;
    // A line and its `\n` in one `write_all`: the buffer never sends one without the
    // other in separate `write`s, so a kill cuts at most the line being written.
    let mut whole_line = Vec::new();
    loop {
        if a.follow && crate::os::stop_requested() {
            break;
        }
        if a.max_lines.is_some_and(|m| printed >= m) {
            break;
        }
        // At the committed end, what was printed goes out before waiting: a consumer
        // reading the pipe sees each line as soon as it is committed, not when 1000
        // lines or a 500 ms lull have passed.
        let line = match reader.next_line()? {
            Some(l) => Some(l),
            None if a.follow => {
                if unflushed > 0 {
                    unflushed = 0;
                    if !checkpoint(&mut out, &mut sent, written, false)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                // The reader of a pipe or socket on stdout went away (`| head -n 2`
                // once it has its lines): end, as `tail -f` does, instead of waiting for
                // a line to fail writing (it waited for ever on a quiet target: an
                // outside tester). The cursor is committed past what it took, as at a
                // SIGTERM.
                if crate::os::pipe_reader_gone(&io::stdout()) {
                    break;
                }
                reader.next_line_wait(poll, Duration::from_millis(500))?
            }
            None => None,
        };
        match &line {
            Some(l) => {
                if resuming.take().is_some() {
                    // (README "tail": a line cut by a kill, written again whole here)
                    match crate::os::cut_start_of_line(l) {
                        Ok(Some(cut)) => say_err!(
                            "tributary tail: the output file ended with the first {cut} byte(s) of the line it \
                             resumes at, unterminated (a tail killed while writing it): cut them off; the line is \
                             written again whole"
                        ),
                        Ok(None) => {}
                        Err(e) => say_err!(
                            "tributary tail: could not check the end of the output file for a line cut by a kill \
                             ({e}); if it ends without a newline, its last line and the next one run together"
                        ),
                    }
                }
                whole_line.clear();
                whole_line.extend_from_slice(l);
                whole_line.push(b'\n');
                let res = out.write_all(&whole_line);
                match res {
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                    Err(e) => return Err(stdout_err(e)),
                    Ok(()) => {}
                }
                written += l.len() as u64 + 1;
                printed += 1;
                sent.push_back((written, reader.cursor()));
                unflushed += 1;
                if unflushed >= 1000 {
                    unflushed = 0;
                    if !checkpoint(&mut out, &mut sent, written, false)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
            None => {
                unflushed = 0;
                if !checkpoint(&mut out, &mut sent, written, false)? {
                    return Ok(ExitCode::SUCCESS);
                }
                if !a.follow || crate::os::stop_requested() {
                    break;
                }
            }
        }
    }
    checkpoint(&mut out, &mut sent, written, true)?;
    // A run that printed nothing stores where it stands all the same: the next run
    // resumes there, and lines committed meanwhile that retention removed before it
    // ran are the retention error — they were skipped in silence when a first run on
    // an empty target stored nothing and the next began at the oldest generation kept
    // (an outside tester: 2,260 lines). docs/design.md "Cursors".
    if printed == 0 {
        if let (Some((st, name)), Some(_)) = (&store, reader.target_id()) {
            st.commit(name, reader.cursor())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
