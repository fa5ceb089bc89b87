//! The fuzz targets' logic (`fuzz/src/lib.rs`) run as ordinary tests:
//! * every committed crash reproducer (`fuzz/regressions/<target>/*`) and every seed
//!   replays without a failure — a fixed bug stays fixed;
//! * a bounded run of random inputs (the fallback where cargo-fuzz cannot run:
//!   `TRIB_FUZZ_FALLBACK_SECS=60 cargo test --release --test torture_fuzz -- --nocapture`);
//! * with `TRIB_FUZZ_WRITE_SEEDS=<dir>`, the seeds are written to `<dir>/<target>/` for
//!   cargo-fuzz to start from (scripts/test.d/80-fuzz.sh does this).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzzlib;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

type Target = (&'static str, fn(&[u8]), fn() -> Vec<Vec<u8>>);

const TARGETS: &[Target] = &[
    ("manifest_decode", fuzzlib::manifest_decode, fuzzlib::manifest_seeds),
    ("api_ops", api_ops, fuzzlib::api_ops_seeds),
    ("ffi_ops", ffi_ops, fuzzlib::ffi_ops_seeds),
];

fn ffi_ops(data: &[u8]) {
    fuzzlib::ffi_ops(data);
}

fn api_ops(data: &[u8]) {
    fuzzlib::api_ops(data);
}

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz"))
}

#[test]
fn committed_reproducers_and_seeds_replay_cleanly() {
    let mut replayed = 0;
    for (name, run, seeds) in TARGETS {
        for s in seeds() {
            run(&s);
            replayed += 1;
        }
        let dir = fuzz_dir().join("regressions").join(name);
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        files.sort();
        for f in files {
            println!("replaying {}", f.display());
            run(&fs::read(&f).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed >= 4, "nothing replayed");
    if let Ok(out) = std::env::var("TRIB_FUZZ_WRITE_SEEDS") {
        for (name, _, seeds) in TARGETS {
            let d = Path::new(&out).join(name);
            fs::create_dir_all(&d).unwrap();
            for (i, s) in seeds().iter().enumerate() {
                fs::write(d.join(format!("seed-{i}")), s).unwrap();
            }
        }
    }
}

/// The seeds really exercise what they claim to (a seed that silently stopped
/// reaching the drain would make the fuzzer start from nothing).
#[test]
fn seeds_are_meaningful() {
    let m = fuzzlib::manifest_seeds();
    let p = Path::new("m");
    assert!(tributary::Manifest::decode(&m[0], p).is_ok() && tributary::Manifest::decode(&m[1], p).is_ok());
    assert!(tributary::Manifest::decode(&m[3], p).is_err());
    assert_eq!(m[2][0], fuzzlib::WITH_CRC);
    let seeds = fuzzlib::api_ops_seeds();
    let a = fuzzlib::api_ops(&seeds[0]);
    assert!(a.drains_ok >= 2 && a.lines_committed == 4 && !a.poisoned, "{a:?}");
    let b = fuzzlib::api_ops(&seeds[1]);
    assert!(b.drains_refused >= 1 && b.poisoned, "{b:?}");
    for s in fuzzlib::ffi_ops_seeds() {
        let f = fuzzlib::ffi_ops(&s);
        assert!(f.calls >= 10 && f.ok >= 5 && f.errors >= 2, "{f:?}");
    }
}

/// xorshift64*, for the fallback driver.
fn next(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Random inputs, and random mutations of the seeds, for a bounded time per target.
#[test]
fn random_inputs_fallback() {
    let secs: u64 = std::env::var("TRIB_FUZZ_FALLBACK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut seed = std::env::var("TRIB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1;
    println!("random_inputs_fallback: seed {seed}, {secs} s per target");
    for (name, run, seeds) in TARGETS {
        let seeds = seeds();
        let until = Instant::now() + Duration::from_secs(secs);
        let mut execs = 0u64;
        while Instant::now() < until {
            let r = next(&mut seed);
            let input: Vec<u8> = if r.is_multiple_of(2) {
                let len = (next(&mut seed) % 256) as usize;
                (0..len).map(|_| next(&mut seed) as u8).collect()
            } else {
                let mut v = seeds[(r / 2 % seeds.len() as u64) as usize].clone();
                for _ in 0..1 + next(&mut seed) % 4 {
                    if v.is_empty() {
                        break;
                    }
                    let at = (next(&mut seed) % v.len() as u64) as usize;
                    match next(&mut seed) % 3 {
                        0 => v[at] = next(&mut seed) as u8,
                        1 => v.truncate(at),
                        _ => v.insert(at, next(&mut seed) as u8),
                    }
                }
                v
            };
            let ok = std::panic::catch_unwind(|| run(&input));
            assert!(ok.is_ok(), "{name}: input {input:?} failed (seed {seed}); add it to fuzz/regressions/{name}/");
            execs += 1;
        }
        println!("random_inputs_fallback: {name}: {execs} executions in {secs} s");
        assert!(execs > 0);
    }
}
