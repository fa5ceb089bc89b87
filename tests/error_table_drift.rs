//! docs/errors.md — the table of error kinds, their codes, what each means and what to
//! do — is generated from `ErrorKind` (src/error.rs, the one source) and must match it.
//! Regenerate with `TRIB_BLESS_ERRORS=1 cargo test --test error_table_drift`.

use std::path::Path;

use tributary::ErrorKind;

fn generate() -> String {
    let mut s = String::from(
        "# Error kinds\n\n\
         <!-- Generated from src/error.rs by tests/error_table_drift.rs: do not edit by hand. -->\n\n\
         Every failed call reports one of these kinds: `tributary::ErrorKind` in Rust, the \
         `TRIB_E_*` result code in C, an exception class in Python (`tributary.errors`), an \
         `ErrorKind` and sentinel error in Go. The CLI prints `tributary: error [kind]: message`; \
         the message names the object and what happened. The `compact` daemon retries with \
         backoff, reporting each problem once, except where the last column says it stops \
         (exit 3: retrying cannot help). A journal it cannot open or drain is set aside while \
         the others drain, and tried again when its files change and at least every minute \
         (so a spool back from read-only, or given inodes again, drains within a minute).\n\n\
         | code | kind | what happened | what to do | `compact` |\n|---|---|---|---|---|\n",
    );
    for k in ErrorKind::ALL {
        let daemon = match k {
            _ if k.needs_a_human() => "stops (exit 3)",
            ErrorKind::UnsafeFilesystem => "stops if about the target; sets a journal aside",
            _ if matches!(
                k,
                ErrorKind::NotAJournal
                    | ErrorKind::JournalRestored
                    | ErrorKind::JournalForeign
                    | ErrorKind::CorruptJournalRow
                    | ErrorKind::JournalGone
            ) =>
            {
                "sets the journal aside, drains the others"
            }
            ErrorKind::Io => "retries; sets a journal it cannot open aside",
            _ => "retries",
        };
        s.push_str(&format!("| {} | `{}` | {} | {} | {daemon} |\n", k as i32, k.name(), k.meaning(), k.what_to_do()));
    }
    s.push_str("| 100 | `panic` (C ABI only) | A bug inside the library, caught at the C boundary; the handle the call used is poisoned. | Close the handle; report the bug with the message. | — |\n");
    s
}

#[test]
fn docs_errors_md_matches_the_error_kinds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/errors.md");
    let fresh = generate();
    if std::env::var_os("TRIB_BLESS_ERRORS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "docs/errors.md is out of date with src/error.rs; regenerate it with\n\n    \
         TRIB_BLESS_ERRORS=1 cargo test --test error_table_drift\n"
    );
}

#[test]
fn every_kind_is_listed_once_with_consecutive_codes() {
    for (i, k) in ErrorKind::ALL.iter().enumerate() {
        assert_eq!(*k as usize, i + 1, "{k:?} is out of order in ErrorKind::ALL");
        assert!(!k.meaning().is_empty() && !k.what_to_do().is_empty(), "{k:?} has no text");
    }
}
