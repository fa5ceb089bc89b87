//! Fan-in → process → fan-out, with no broker: the seed's AMQP pipeline rebuilt on
//! tributary. Run it with `cargo run --release --example pipeline`.
//!
//! - 3 producer processes ("hosts", each its own spool) append events to journals;
//! - one `compact` daemon per host drains them into target A (fan-in), rotating it
//!   every 64 KiB (`a.log.1`, `a.log.2`, ...);
//! - a processor process follows A from a durable cursor, transforms each event, and
//!   appends the result to its own journal KEYED by where the event starts in A
//!   ([`Reader::line_start`]: the same whether it is read before or after a rotation),
//!   so a processor killed mid-way and restarted re-appends nothing twice: exactly-once;
//! - a `compact` daemon drains the processor's journal into target B;
//! - 3 consumer processes follow B from the start, each receiving every result
//!   exactly once (fan-out).
//!
//! The processor is SIGKILLed once at a random moment and restarted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tributary::{Compactor, CompactorOptions, Cursor, CursorStore, Journal, JournalOptions, Reader};

const HOSTS: u32 = 3;
const EVENTS_PER_HOST: u64 = 2000;
const CONSUMERS: u32 = 3;
const ROTATE_A_BYTES: &str = "65536";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("producer") => producer(Path::new(&args[2]), args[3].parse().unwrap()),
        Some("processor") => processor(Path::new(&args[2])),
        Some("consumer") => consumer(Path::new(&args[2]), args[3].parse().unwrap()),
        _ => orchestrate(),
    };
    if let Err(e) = result {
        eprintln!("pipeline: {e}");
        std::process::exit(1);
    }
}

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn producer(dir: &Path, host: u32) -> Res {
    let j = Journal::open(dir.join(format!("spool-host{host}/events.journal")), JournalOptions::default())?;
    for chunk in (0..EVENTS_PER_HOST).collect::<Vec<_>>().chunks(50) {
        let items: Vec<(String, String)> =
            chunk.iter().map(|i| (format!("h{host}-{i}"), format!("host{host} event {i} amount={}", i % 97))).collect();
        j.append_batch_keyed(&items)?;
        std::thread::sleep(Duration::from_millis(10)); // a steady stream, not one burst
    }
    Ok(())
}

/// Follows A from its durable cursor; each result is keyed by where its source line
/// starts in A.
fn processor(dir: &Path) -> Res {
    let out = Journal::open(dir.join("spool-processor/results.journal"), JournalOptions::default())?;
    let cursors = CursorStore::open(dir.join("processor-cursor.db"))?;
    let start = cursors.get("processor")?.unwrap_or(Cursor::START);
    let mut reader = loop {
        match Reader::open_at(dir.join("shared/a.log"), start) {
            Ok(r) => break r,
            Err(_) => std::thread::sleep(Duration::from_millis(20)), // A not drained yet
        }
    };
    let total = u64::from(HOSTS) * EVENTS_PER_HOST;
    let mut done = count_lines_before(dir, reader.cursor());
    let stop = AtomicBool::new(false);
    while done < total {
        let mut items = Vec::new();
        while items.len() < 100 {
            let Some(line) = reader.next_line_until(Duration::from_millis(20), &stop)? else { break };
            // The key: "A:<target_id>:<generation>:<offset>" where this event starts, the
            // same when a restarted processor reads it again, across rotations too.
            let at = reader.line_start().expect("a line was just returned");
            let event = String::from_utf8(line)?;
            let amount: u64 = event.rsplit('=').next().unwrap_or("0").parse()?;
            items.push((format!("A:{at}"), format!("processed [{event}] doubled={}", amount * 2)));
            if reader.committed_len() == reader.offset() {
                break; // nothing more committed right now: ship what we have
            }
        }
        // Results first, durably; then the cursor. A crash between the two replays
        // these events, and their keys make the replay store nothing new.
        out.append_batch_keyed(&items)?;
        cursors.commit("processor", reader.cursor())?;
        done += items.len() as u64;
    }
    Ok(())
}

/// How many lines of A precede `c` (the processor's progress after a restart).
fn count_lines_before(dir: &Path, c: Cursor) -> u64 {
    let mut r = Reader::open_at(dir.join("shared/a.log"), Cursor::START).unwrap();
    let mut n = 0;
    while r.cursor() < c && r.next_line().unwrap().is_some() {
        n += 1;
    }
    n
}

/// Every committed line of `target`, in all the generations kept.
fn count_lines(target: &Path) -> Res<u64> {
    let mut r = Reader::open_at(target, Cursor::START)?;
    let mut n = 0;
    while r.next_line()?.is_some() {
        n += 1;
    }
    Ok(n)
}

fn consumer(dir: &Path, id: u32) -> Res {
    let total = u64::from(HOSTS) * EVENTS_PER_HOST;
    let mut reader = loop {
        match Reader::open_at(dir.join("shared/b.log"), Cursor::START) {
            Ok(r) => break r,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut seen: HashMap<String, u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let stop = AtomicBool::new(false);
    while (seen.len() as u64) < total && Instant::now() < deadline {
        if let Some(l) = reader.next_line_until(Duration::from_millis(20), &stop)? {
            *seen.entry(String::from_utf8(l)?).or_default() += 1;
        }
    }
    let dups = seen.values().filter(|&&n| n > 1).count();
    println!("consumer {id}: received {} distinct results, {dups} duplicated", seen.len());
    if seen.len() as u64 != total || dups != 0 {
        return Err(format!("consumer {id}: expected {total} results exactly once").into());
    }
    Ok(())
}

fn spawn(args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap()).args(args).stderr(Stdio::inherit()).spawn().unwrap()
}

fn tributary_cli() -> PathBuf {
    // target/release/examples/pipeline -> target/release/tributary
    let exe = std::env::current_exe().unwrap();
    let cli = exe.parent().and_then(Path::parent).unwrap().join("tributary");
    assert!(cli.exists(), "build the CLI first: cargo build --release (looked for {})", cli.display());
    cli
}

fn compact(target: &Path, spool: &Path, rotate_bytes: Option<&str>) -> Child {
    Command::new(tributary_cli())
        .args(["compact", "--target", &target.display().to_string(), "--spool", &spool.display().to_string()])
        .args(["--interval", "50"])
        .args(rotate_bytes.map(|b| ["--rotate-bytes", b]).into_iter().flatten())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn orchestrate() -> Res {
    let dir = std::env::temp_dir().join(format!("tributary-pipeline-{}", std::process::id()));
    for d in
        ["shared", "spool-processor"].iter().map(|s| s.to_string()).chain((1..=HOSTS).map(|h| format!("spool-host{h}")))
    {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let d = dir.display().to_string();
    let (a, b) = (dir.join("shared/a.log"), dir.join("shared/b.log"));
    for t in [&a, &b] {
        Compactor::new(t, CompactorOptions::default())?.init()?; // once: drains never create a target
    }
    println!("pipeline in {d}: {HOSTS} producers -> A -> processor -> B -> {CONSUMERS} consumers");
    let start = Instant::now();
    let mut daemons: Vec<Child> =
        (1..=HOSTS).map(|h| compact(&a, &dir.join(format!("spool-host{h}")), Some(ROTATE_A_BYTES))).collect();
    daemons.push(compact(&b, &dir.join("spool-processor"), None));
    let producers: Vec<Child> = (1..=HOSTS).map(|h| spawn(&["producer", &d, &h.to_string()])).collect();
    let consumers: Vec<Child> = (1..=CONSUMERS).map(|c| spawn(&["consumer", &d, &c.to_string()])).collect();
    let mut proc = spawn(&["processor", &d]);
    // Kill the processor once it has committed its cursor at least once (mid-stream).
    let store = dir.join("processor-cursor.db");
    while proc.try_wait()?.is_none() && !(store.exists() && CursorStore::open(&store)?.get("processor")?.is_some()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if proc.try_wait()?.is_none() {
        proc.kill()?; // SIGKILL mid-stream
        proc.wait()?;
        println!(
            "processor SIGKILLed after {:.1}s; restarting it from its durable cursor",
            start.elapsed().as_secs_f64()
        );
        proc = spawn(&["processor", &d]);
    }
    for mut p in producers {
        assert!(p.wait()?.success(), "a producer failed");
    }
    println!("producers done: {} events appended", u64::from(HOSTS) * EVENTS_PER_HOST);
    assert!(proc.wait()?.success(), "the processor failed");
    let mut ok = true;
    for mut c in consumers {
        ok &= c.wait()?.success();
    }
    for mut dmn in daemons {
        // SIGTERM: the daemon finishes its round and exits 0
        std::process::Command::new("kill").args(["-TERM", &dmn.id().to_string()]).status()?;
        dmn.wait()?;
    }
    let (va, vb) = (tributary::verify(&a)?, tributary::verify(&b)?);
    let (lines_a, lines_b) = (count_lines(&a)?, count_lines(&b)?);
    println!(
        "A: {lines_a} lines in {} generations, B: {lines_b} lines, verify A {} / B {}; {:.1}s",
        va.rotated_generations + 1,
        if va.is_consistent() { "ok" } else { "FAILED" },
        if vb.is_consistent() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    let total = u64::from(HOSTS) * EVENTS_PER_HOST;
    if !ok || lines_a != total || lines_b != total || !va.is_consistent() || !vb.is_consistent() {
        return Err("pipeline check FAILED".into());
    }
    println!("pipeline: PASSED: every event processed once, every consumer got every result once");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
