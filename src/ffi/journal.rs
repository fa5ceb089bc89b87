//! `trib_journal`: open, append (one line, a batch, keyed), backlog, id, close.

use std::ffi::{c_char, c_int};
use std::ptr;
use std::sync::atomic::AtomicBool;

use super::boundary::{
    array_arg, busy_timeout_option, bytes_arg, ffi_call, free_handle, id_buf, into_handle, millis, ms_option, name_arg,
    need, path_arg, poisoning, put, Failure, FfiResult, HandleBox,
};
use super::error::trib_error;
use super::reader::trib_cursor;
use super::{TRIB_DURABILITY_FULL, TRIB_DURABILITY_NORMAL, TRIB_ID_BUF_LEN};
use crate::{Backlog, Durability, Journal, JournalOptions, KeyedAppend};

/// An open journal (the writer side: a `SQLite` WAL file on the writer host's local disk).
///
/// Thread-safety: may be used from several threads at once (it is `Send + Sync`):
/// concurrent appends on one handle share fsyncs (group commit), each returning when
/// its own lines are durable. Several handles, in one or several processes, may open
/// the same journal file.
///
/// Ownership: created by `trib_journal_open`, released by `trib_journal_close`, which
/// must not run while another thread is still using the handle.
pub struct trib_journal {
    _opaque: [u8; 0],
}

#[repr(C)]
struct JournalBox {
    magic: u64,
    poisoned: AtomicBool,
    inner: Journal,
}

impl HandleBox for JournalBox {
    const MAGIC: u64 = 0x7472_6962_5f6a_726e; // "trib_jrn"
    const NAME: &'static str = "trib_journal";
    type Opaque = trib_journal;
    fn poison(&self) -> Option<&AtomicBool> {
        Some(&self.poisoned)
    }
}

/// Options for `trib_journal_open`. Fill it with `trib_journal_options_default` and
/// change the fields you need (passing NULL options means the defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_journal_options {
    /// `TRIB_DURABILITY_FULL` (default) or `TRIB_DURABILITY_NORMAL`.
    pub durability: u32,
    /// Longest accepted line in bytes, without the `\n` (default 1 MiB; 1 to
    /// 999,999,000: `SQLite` stores at most 10^9 bytes in a row).
    pub max_line_bytes: usize,
    /// Refuse appends once the undrained backlog would exceed this many bytes
    /// (`TRIB_E_JOURNAL_FULL`). 0 (default): no limit.
    pub max_backlog_bytes: u64,
    /// With `max_backlog_bytes`: wait up to this long for a drain to make room before
    /// failing with `TRIB_E_JOURNAL_FULL`. 0 (default): fail at once.
    pub full_wait_ms: u64,
    /// How long an idempotency key of `trib_journal_append_keyed` is remembered
    /// (default 7 days).
    pub key_retention_ms: u64,
    /// How long to wait for another process's `SQLite` write lock on this journal
    /// (default 30 s; at most 2147483647).
    pub busy_timeout_ms: u64,
    /// Accept a journal on a network filesystem (only if it really is host-local).
    /// Default false.
    pub allow_network_fs: bool,
}

impl From<&JournalOptions> for trib_journal_options {
    fn from(o: &JournalOptions) -> Self {
        trib_journal_options {
            durability: match o.durability {
                Durability::Full => TRIB_DURABILITY_FULL,
                Durability::Normal => TRIB_DURABILITY_NORMAL,
            },
            max_line_bytes: o.max_line_bytes,
            max_backlog_bytes: o.max_backlog_bytes.unwrap_or(0),
            full_wait_ms: o.full_wait.map_or(0, millis),
            key_retention_ms: millis(o.key_retention),
            busy_timeout_ms: millis(o.busy_timeout),
            allow_network_fs: o.allow_network_fs,
        }
    }
}

impl trib_journal_options {
    pub(super) fn to_rust(self) -> FfiResult<JournalOptions> {
        let durability = match self.durability {
            TRIB_DURABILITY_FULL => Durability::Full,
            TRIB_DURABILITY_NORMAL => Durability::Normal,
            other => {
                return Err(Failure::arg(format!(
                    "`durability` is {other}; use TRIB_DURABILITY_FULL (0) or TRIB_DURABILITY_NORMAL (1)"
                )))
            }
        };
        if self.max_line_bytes == 0 {
            return Err(Failure::arg("`max_line_bytes` must be at least 1"));
        }
        Ok(JournalOptions {
            durability,
            max_line_bytes: self.max_line_bytes,
            max_backlog_bytes: (self.max_backlog_bytes > 0).then_some(self.max_backlog_bytes),
            full_wait: match self.full_wait_ms {
                0 => None,
                ms => Some(ms_option(ms, "full_wait_ms")?),
            },
            key_retention: ms_option(self.key_retention_ms, "key_retention_ms")?,
            busy_timeout: busy_timeout_option(self.busy_timeout_ms, "busy_timeout_ms")?,
            allow_network_fs: self.allow_network_fs,
            ..JournalOptions::default()
        })
    }
}

/// What is waiting in a journal (`trib_journal_backlog`, `trib_status_report_journal`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct trib_backlog {
    /// Lines appended and not yet drained.
    pub lines: u64,
    /// Their bytes (without `\n`s).
    pub bytes: u64,
    /// When the oldest waiting line was appended, in ms since the Unix epoch; 0 when no
    /// line is waiting.
    pub oldest_append_ms: i64,
    /// Highest seq ever assigned (0 for a journal never written to).
    pub last_seq: u64,
    /// Highest seq recorded as drained.
    pub drained_seq: u64,
}

impl From<&Backlog> for trib_backlog {
    fn from(b: &Backlog) -> Self {
        trib_backlog {
            lines: b.lines,
            bytes: b.bytes,
            oldest_append_ms: b.oldest_append_ms.unwrap_or(0),
            last_seq: b.last_seq,
            drained_seq: b.drained_seq,
        }
    }
}

/// A byte string `(ptr, len)`, e.g. one line of a batch. `(NULL, 0)` is the empty string.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_slice {
    pub ptr: *const u8,
    pub len: usize,
}

/// Fill `*options_out` with the defaults (durability full, 1 MiB lines, no backlog
/// limit, fail at once when full, keys kept 7 days, 30 s busy timeout, local disks only).
///
/// # Safety
/// `options_out` must be NULL or writable; `err_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_options_default(
    options_out: *mut trib_journal_options,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        need(options_out, "options_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(options_out, trib_journal_options::from(&JournalOptions::default())) };
        Ok(())
    })
}

/// Open (creating if needed, mode 0600) the journal at `path`; `options` may be NULL for
/// the defaults. On success `*journal_out` is a new handle for `trib_journal_close`.
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `options` NULL or readable; `journal_out` and
/// `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_open(
    path: *const c_char,
    options: *const trib_journal_options,
    journal_out: *mut *mut trib_journal,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let path = unsafe { path_arg(path, "path") }?;
        need(journal_out, "journal_out")?;
        // SAFETY: NULL or a readable options struct per the caller's contract.
        let opts = match unsafe { options.as_ref() } {
            Some(o) => o.to_rust()?,
            None => JournalOptions::default(),
        };
        let inner = Journal::open(path, opts)?;
        let handle = into_handle(JournalBox { magic: JournalBox::MAGIC, poisoned: AtomicBool::new(false), inner });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(journal_out, handle) };
        Ok(())
    })
}

/// Close a journal handle (NULL is accepted and ignored). Every line whose append
/// returned `TRIB_OK` is already durable; closing adds nothing to that.
///
/// # Safety
/// `journal` must be NULL or an open handle that no other thread is using, and it must
/// not be used again.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_close(journal: *mut trib_journal) {
    // SAFETY: NULL or a live handle no other thread uses, not used again (caller's contract).
    unsafe { free_handle::<JournalBox>(journal) }
}

/// Append one line (`len` bytes at `line`, without `\n`; `(NULL, 0)` is the empty line).
/// Returns once it is durable; `*seq_out` (if not NULL) gets its seq. A line with `\n`
/// or longer than `max_line_bytes` gives `TRIB_E_INVALID_LINE` and stores nothing.
///
/// # Safety
/// `journal` must be NULL or an open handle; `line` NULL or `len` readable bytes;
/// `seq_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append(
    journal: *const trib_journal,
    line: *const u8,
    len: usize,
    seq_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        // SAFETY: NULL or `len` readable bytes per the caller's contract.
        let line = unsafe { bytes_arg(line, len, "line") }?;
        let seq = poisoning(&j.poisoned, || Ok(j.inner.append(line)?))?;
        if !seq_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(seq_out, seq) };
        }
        Ok(())
    })
}

/// Append `count` lines all-or-nothing in one transaction; they get consecutive seqs,
/// the first of which goes to `*first_seq_out` (if not NULL). One bad line refuses the
/// whole batch (`TRIB_E_INVALID_LINE`, `trib_error_line_index` tells which). An empty
/// batch (`count` 0) is `TRIB_E_INVALID_ARG`: it has no first seq.
///
/// # Safety
/// `journal` must be NULL or an open handle; `lines` NULL or `count` readable slices,
/// each NULL or pointing to `len` readable bytes; `first_seq_out` and `err_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append_batch(
    journal: *const trib_journal,
    lines: *const trib_slice,
    count: usize,
    first_seq_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        if count == 0 {
            return Err(Failure::arg("the batch is empty (`count` is 0): it has no first seq"));
        }
        // SAFETY: NULL or `count` readable slices per the caller's contract.
        let slices = unsafe { array_arg(lines, count, "lines") }?;
        let mut batch: Vec<&[u8]> = Vec::with_capacity(slices.len());
        for (i, s) in slices.iter().enumerate() {
            // SAFETY: each slice is NULL or `len` readable bytes per the caller's contract.
            batch.push(unsafe { bytes_arg(s.ptr, s.len, &format!("lines[{i}].ptr")) }?);
        }
        let first = poisoning(&j.poisoned, || Ok(j.inner.append_batch(&batch)?))?;
        if !first_seq_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(first_seq_out, first) };
        }
        Ok(())
    })
}

/// Append a line once per idempotency key: a retry with a key seen within the key
/// retention window stores nothing and gives the first call's seq. The key is any
/// non-empty byte string (an empty key is `TRIB_E_INVALID_ARG`).
///
/// # Safety
/// `journal` must be NULL or an open handle; `key` NULL or `key_len` readable bytes;
/// `line` NULL or `line_len` readable bytes; `seq_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append_keyed(
    journal: *const trib_journal,
    key: *const u8,
    key_len: usize,
    line: *const u8,
    line_len: usize,
    seq_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        // SAFETY: NULL or `key_len` readable bytes per the caller's contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        // SAFETY: NULL or `line_len` readable bytes per the caller's contract.
        let line = unsafe { bytes_arg(line, line_len, "line") }?;
        let seq = poisoning(&j.poisoned, || Ok(j.inner.append_keyed(key, line)?))?;
        if !seq_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(seq_out, seq) };
        }
        Ok(())
    })
}

/// What one keyed append did (`trib_journal_append_keyed_outcome`,
/// `trib_journal_append_keyed_batch`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct trib_keyed_append {
    /// The line's seq: the new one when `stored`, else the seq stored earlier under the
    /// same key.
    pub seq: u64,
    /// true: this call stored the line. false: the key was already stored (by an
    /// earlier call, or an earlier line of the same batch) and nothing was stored (a
    /// retry absorbed). Exact with any number of writers on the journal.
    pub stored: bool,
}

impl From<KeyedAppend> for trib_keyed_append {
    fn from(k: KeyedAppend) -> Self {
        trib_keyed_append { seq: k.seq, stored: k.stored }
    }
}

/// `count` slices as byte strings (`what` names the parameter in messages).
///
/// # Safety
/// `slices` must be NULL or `count` readable slices, each NULL or pointing to `len`
/// readable bytes that outlive `'a`.
unsafe fn slices_arg<'a>(slices: *const trib_slice, count: usize, what: &str) -> FfiResult<Vec<&'a [u8]>> {
    // SAFETY: forwarded contract.
    let slices = unsafe { array_arg(slices, count, what) }?;
    let mut out: Vec<&[u8]> = Vec::with_capacity(slices.len());
    for (i, s) in slices.iter().enumerate() {
        // SAFETY: each slice is NULL or `len` readable bytes per the caller's contract.
        out.push(unsafe { bytes_arg(s.ptr, s.len, &format!("{what}[{i}].ptr")) }?);
    }
    Ok(out)
}

/// `trib_journal_append_keyed`, saying whether this call stored the line: on success
/// `*outcome_out` gets its seq and `stored` (false: the key was already stored, nothing
/// was stored and `seq` is the earlier line's: a retry absorbed).
///
/// # Safety
/// `journal` must be NULL or an open handle; `key` NULL or `key_len` readable bytes;
/// `line` NULL or `line_len` readable bytes; `outcome_out` and `err_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append_keyed_outcome(
    journal: *const trib_journal,
    key: *const u8,
    key_len: usize,
    line: *const u8,
    line_len: usize,
    outcome_out: *mut trib_keyed_append,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        // SAFETY: NULL or `key_len` readable bytes per the caller's contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        // SAFETY: NULL or `line_len` readable bytes per the caller's contract.
        let line = unsafe { bytes_arg(line, line_len, "line") }?;
        need(outcome_out, "outcome_out")?;
        let outcome = poisoning(&j.poisoned, || Ok(j.inner.append_keyed_outcome(key, line)?))?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(outcome_out, outcome.into()) };
        Ok(())
    })
}

/// Append `count` keyed lines all-or-nothing in one transaction (one fsync): line `i`
/// is `lines[i]` under the idempotency key `keys[i]`, stored once per key as by
/// `trib_journal_append_keyed`. On success `outcomes_out[i]` (an array of `count`) says
/// each line's seq and whether this call stored it; a key repeated in the batch is
/// stored by its first line, the later ones absorbed. One bad line or empty key refuses
/// the whole batch (`trib_error_line_index` names a bad line). `count` 0 does nothing.
///
/// # Safety
/// `journal` must be NULL or an open handle; `keys` and `lines` NULL or `count` readable
/// slices each, every slice NULL or pointing to `len` readable bytes; `outcomes_out`
/// NULL or `count` writable `trib_keyed_append`s; `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append_keyed_batch(
    journal: *const trib_journal,
    keys: *const trib_slice,
    lines: *const trib_slice,
    count: usize,
    outcomes_out: *mut trib_keyed_append,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        // SAFETY: NULL or `count` readable slices per the caller's contract.
        let keys = unsafe { slices_arg(keys, count, "keys") }?;
        // SAFETY: NULL or `count` readable slices per the caller's contract.
        let lines = unsafe { slices_arg(lines, count, "lines") }?;
        if count > 0 {
            need(outcomes_out, "outcomes_out")?;
        }
        let items: Vec<(&[u8], &[u8])> = keys.into_iter().zip(lines).collect();
        let outcomes = poisoning(&j.poisoned, || Ok(j.inner.append_batch_keyed_outcome(&items)?))?;
        for (i, o) in outcomes.into_iter().enumerate() {
            // SAFETY: `outcomes_out` is not NULL (checked above, count > 0) and has
            // `count` writable elements per the caller's contract; `i < count`.
            unsafe { put(outcomes_out.add(i), o.into()) };
        }
        Ok(())
    })
}

/// Append `count` lines (0 is allowed: only the cursor is recorded) AND record `cursor`
/// under `name` (a non-empty NUL-terminated UTF-8 string) in the journal's own file, in
/// ONE transaction: both are durable or neither is. For a program that reads a target,
/// appends what it derived from it here and must remember how far it read atomically
/// with those results (docs/design.md, "Processed cursors in the journal"). Read the
/// cursor back with `trib_journal_cursor`. `*first_seq_out` (if not NULL) gets the first
/// line's seq, or 0 when `count` is 0. A cursor whose `target_id` differs from the one
/// `name` already holds, or that has none (a legacy cursor; `{0, 0}` excepted, which
/// resets the name), is `TRIB_E_INVALID_ARG` (one name follows one target), as is one
/// no reader opens at (generation 0 with an offset); nothing is stored on any error.
///
/// # Safety
/// `journal` must be NULL or an open handle; `lines` NULL or `count` readable slices,
/// each NULL or pointing to `len` readable bytes; `name` NULL or NUL-terminated;
/// `cursor` NULL or readable; `first_seq_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append_batch_with_cursor(
    journal: *const trib_journal,
    lines: *const trib_slice,
    count: usize,
    name: *const c_char,
    cursor: *const trib_cursor,
    first_seq_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        // SAFETY: NULL or `count` readable slices per the caller's contract.
        let batch = unsafe { slices_arg(lines, count, "lines") }?;
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let name = unsafe { name_arg(name, "name") }?;
        need(cursor, "cursor")?;
        // SAFETY: not NULL (checked above) and readable per the caller's contract.
        let cursor = unsafe { cursor.read() }.to_rust()?;
        let first = poisoning(&j.poisoned, || Ok(j.inner.append_batch_with_cursor(&batch, name, cursor)?))?;
        if !first_seq_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(first_seq_out, first) };
        }
        Ok(())
    })
}

/// The cursor last recorded under `name` by `trib_journal_append_batch_with_cursor`:
/// `*found_out` says whether there is one; if so, `*cursor_out` is it (resume with
/// `trib_reader_open_cursor`, which refuses it on another target). Without one,
/// `*cursor_out` is not touched.
///
/// # Safety
/// `journal` must be NULL or an open handle; `name` NULL or NUL-terminated;
/// `cursor_out`, `found_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_cursor(
    journal: *const trib_journal,
    name: *const c_char,
    cursor_out: *mut trib_cursor,
    found_out: *mut bool,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let name = unsafe { name_arg(name, "name") }?;
        need(cursor_out, "cursor_out")?;
        need(found_out, "found_out")?;
        let got = poisoning(&j.poisoned, || Ok(j.inner.cursor(name)?))?;
        if let Some(c) = &got {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(cursor_out, trib_cursor::from_rust(c)) };
        }
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(found_out, got.is_some()) };
        Ok(())
    })
}

/// What is waiting in this journal, and its seq counters.
///
/// # Safety
/// `journal` must be NULL or an open handle; `backlog_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_backlog(
    journal: *const trib_journal,
    backlog_out: *mut trib_backlog,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        need(backlog_out, "backlog_out")?;
        let b = poisoning(&j.poisoned, || Ok(j.inner.backlog()?))?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(backlog_out, trib_backlog::from(&b)) };
        Ok(())
    })
}

/// The journal's random 128-bit id as 32 lowercase hex digits and a NUL, written to
/// `buf`, which must hold at least `TRIB_ID_BUF_LEN` (33) bytes.
///
/// # Safety
/// `journal` must be NULL or an open handle; `buf` NULL or `buf_len` writable bytes;
/// `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_id(
    journal: *const trib_journal,
    buf: *mut c_char,
    buf_len: usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, journal, |j: &JournalBox| {
        need(buf, "buf")?;
        if buf_len < TRIB_ID_BUF_LEN {
            return Err(Failure::arg(format!("`buf_len` is {buf_len}, at least {TRIB_ID_BUF_LEN} is needed")));
        }
        let id = id_buf(&j.inner.id().to_hex());
        // SAFETY: `buf` is not NULL and has at least TRIB_ID_BUF_LEN writable bytes
        // (checked above, caller's contract); `id` does not overlap it.
        unsafe { ptr::copy_nonoverlapping(id.as_ptr(), buf, TRIB_ID_BUF_LEN) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::{CStr, CString};

    use super::*;
    use crate::ffi::error::{trib_error_free, trib_error_kind, trib_error_message};
    use crate::ffi::{TRIB_E_INVALID_ARG, TRIB_E_PANIC, TRIB_OK};

    /// The message of the error a call that returned `rc` gave; the error is freed.
    ///
    /// # Safety
    /// `err` must be an error just returned by the library.
    unsafe fn taken(rc: c_int, err: *mut trib_error) -> String {
        // SAFETY: a live error (the caller's contract), freed once here.
        unsafe {
            assert_eq!(trib_error_kind(err), rc);
            let msg = CStr::from_ptr(trib_error_message(err)).to_string_lossy().into_owned();
            trib_error_free(err);
            msg
        }
    }

    /// A call on `journal` whose engine part panics, built as the journal's calls are.
    ///
    /// # Safety
    /// `journal` must be NULL or an open handle; `err_out` NULL or writable.
    unsafe fn panicking_call(journal: *const trib_journal, err_out: *mut *mut trib_error) -> c_int {
        ffi_call!(err_out, journal, |j: &JournalBox| {
            poisoning(&j.poisoned, || -> FfiResult<()> { panic!("a bug in the engine") })
        })
    }

    #[test]
    fn a_panic_on_a_handle_poisons_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = CString::new(dir.path().join("j.journal").into_os_string().into_encoded_bytes()).unwrap();
        let (mut journal, mut err) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: a NUL-terminated path, NULL options, outputs that are locals.
        assert_eq!(unsafe { trib_journal_open(path.as_ptr(), ptr::null(), &raw mut journal, &raw mut err) }, TRIB_OK);

        // SAFETY: an open handle; `err` is a local.
        let rc = unsafe { panicking_call(journal, &raw mut err) };
        // SAFETY: `err` was just returned by the library.
        let msg = unsafe { taken(rc, err) };
        assert_eq!(rc, TRIB_E_PANIC);
        assert!(msg.contains("a bug in the engine") && msg.contains("poisoned"), "{msg}");

        // Every later call that uses the journal is refused, its output untouched.
        let (mut seq, mut err) = (0, ptr::null_mut());
        // SAFETY: an open handle, 2 readable bytes, outputs that are locals.
        let rc = unsafe { trib_journal_append(journal, b"hi".as_ptr(), 2, &raw mut seq, &raw mut err) };
        // SAFETY: `err` was just returned by the library.
        let msg = unsafe { taken(rc, err) };
        assert_eq!((rc, seq), (TRIB_E_PANIC, 0));
        assert!(msg.contains("this trib_journal is poisoned"), "{msg}");
        // Getters too: they would read what the panic may have left half-updated.
        let (mut id, mut err) = ([0 as c_char; TRIB_ID_BUF_LEN], ptr::null_mut());
        // SAFETY: an open handle, a buffer of TRIB_ID_BUF_LEN bytes, `err` a local.
        let rc = unsafe { trib_journal_id(journal, id.as_mut_ptr(), id.len(), &raw mut err) };
        // SAFETY: `err` was just returned by the library.
        let msg = unsafe { taken(rc, err) };
        assert_eq!((rc, id[0]), (TRIB_E_PANIC, 0), "{msg}");
        // SAFETY: open, closed once.
        unsafe { trib_journal_close(journal) };
    }

    #[test]
    fn null_arguments_are_invalid_arg_with_an_error() {
        let mut err: *mut trib_error = ptr::null_mut();
        // SAFETY: every pointer is NULL or points to a local.
        let rc = unsafe { trib_journal_append(ptr::null(), ptr::null(), 0, ptr::null_mut(), &raw mut err) };
        assert_eq!(rc, TRIB_E_INVALID_ARG);
        assert!(!err.is_null());
        // SAFETY: `err` was just returned by the library.
        unsafe {
            assert_eq!(trib_error_kind(err), TRIB_E_INVALID_ARG);
            let msg = CStr::from_ptr(trib_error_message(err)).to_str().unwrap();
            assert!(msg.contains("`journal` is NULL"), "{msg}");
            trib_error_free(err);
        }
    }

    #[test]
    fn huge_timeouts_are_refused_not_panics() {
        let mut o = trib_journal_options::from(&JournalOptions::default());
        o.busy_timeout_ms = u64::MAX;
        assert_eq!(o.to_rust().err().map(|f| f.code), Some(TRIB_E_INVALID_ARG));
        let mut o = trib_journal_options::from(&JournalOptions::default());
        o.key_retention_ms = u64::MAX;
        assert_eq!(o.to_rust().err().map(|f| f.code), Some(TRIB_E_INVALID_ARG));
        let round_trip = trib_journal_options::from(&JournalOptions::default()).to_rust().unwrap();
        assert_eq!(round_trip.busy_timeout, JournalOptions::default().busy_timeout);
    }
}
