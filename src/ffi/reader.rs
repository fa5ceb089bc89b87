//! `trib_reader` (open, next line, positions, close) and `trib_cursor` (its text form).

use std::ffi::{c_char, c_int, CStr};
use std::ptr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::boundary::{
    ffi_call, free_handle, id_buf, into_handle, ms_option, need, path_arg, poisoning, put, Failure, FfiResult,
    HandleBox,
};
use super::error::trib_error;
use super::{TRIB_CURSOR_TEXT_LEN, TRIB_ID_BUF_LEN};
use crate::{Cursor, Lag, Reader, TargetId};

/// A reading position in a target: a generation of it, the byte offset of a line's
/// start in that generation, and the id of the target it belongs to.
///
/// `target_id` is the target's id (32 hex digits and a NUL, as `trib_status` reports
/// it), or the empty string for a cursor that names no target: the very beginning (all
/// zero: `trib_cursor c = {0};` is the oldest generation still kept, on any target), a
/// legacy cursor (two numbers kept by an earlier version, or the text
/// `generation:offset`), or the position of a reader of a target that was never drained
/// (it learns the id when the manifest appears). A reader refuses a cursor whose
/// `target_id` is another target's (`TRIB_E_INVALID_ARG`, reading nothing); a cursor
/// without one cannot be checked.
///
/// Text form (`trib_cursor_format`, `trib_cursor_parse`):
/// `<target_id>:<generation>:<offset>`, or `<generation>:<offset>` without an id.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_cursor {
    /// The generation: 1 until the first managed rotation, one more per rotation; 0
    /// only at the very beginning (with offset 0).
    pub generation: u64,
    /// Byte offset of a line's start within that generation.
    pub offset: u64,
    /// The target's id (32 hex digits) and a NUL, or "" (see above).
    pub target_id: [c_char; TRIB_ID_BUF_LEN],
}

impl trib_cursor {
    pub(super) fn from_rust(c: &Cursor) -> trib_cursor {
        trib_cursor {
            generation: c.generation,
            offset: c.offset,
            target_id: id_buf(&c.target_id.map(|id| id.to_hex()).unwrap_or_default()),
        }
    }

    pub(super) fn to_rust(self) -> FfiResult<Cursor> {
        let bytes: Vec<u8> = self.target_id.iter().map(|&c| c.to_ne_bytes()[0]).take_while(|&b| b != 0).collect();
        if bytes.len() == TRIB_ID_BUF_LEN {
            return Err(Failure::arg("the cursor's `target_id` is not NUL-terminated"));
        }
        let target_id = if bytes.is_empty() {
            None
        } else {
            let text = String::from_utf8_lossy(&bytes);
            Some(TargetId::from_hex(&text).ok_or_else(|| {
                Failure::arg(format!("the cursor's `target_id` `{text}` is not 32 hex digits (nor empty)"))
            })?)
        };
        Ok(Cursor { generation: self.generation, offset: self.offset, target_id })
    }
}

/// A reader of a target's committed lines, from a cursor: a generation of the target
/// and a byte offset in it. It never shows a byte beyond what the manifest committed,
/// so never a torn or uncommitted tail, and it goes on from a rotated generation
/// (`<target>.<generation>`) into the next one.
///
/// Thread-safety: NOT safe to use from several threads at once; it may be moved to
/// another thread between calls (use one reader per thread; many readers may read the
/// same target).
///
/// Ownership: created by `trib_reader_open`, released by `trib_reader_close`. The line
/// memory handed out by `trib_reader_next` belongs to the reader.
pub struct trib_reader {
    _opaque: [u8; 0],
}

#[repr(C)]
struct ReaderBox {
    magic: u64,
    poisoned: AtomicBool,
    inner: Reader,
    /// The last line returned, followed by a NUL byte.
    line: Vec<u8>,
}

impl HandleBox for ReaderBox {
    const MAGIC: u64 = 0x7472_6962_5f72_6472; // "trib_rdr"
    const NAME: &'static str = "trib_reader";
    type Opaque = trib_reader;
    fn poison(&self) -> Option<&AtomicBool> {
        Some(&self.poisoned)
    }
}

/// Open a reader of `target` at byte `offset` of its current generation (0, or the start
/// of a committed line). An offset beyond the committed length or not at a line start is
/// `TRIB_E_INVALID_ARG`. A target that was never drained has no committed lines yet
/// (the reader waits for them). To resume where an earlier reader stopped, across
/// managed rotations too, use `trib_reader_open_at` with its `trib_reader_cursor`.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `reader_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_open(
    target: *const c_char,
    offset: u64,
    reader_out: *mut *mut trib_reader,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(reader_out, "reader_out")?;
        let inner = Reader::open(target, offset)?;
        let handle =
            into_handle(ReaderBox { magic: ReaderBox::MAGIC, poisoned: AtomicBool::new(false), inner, line: vec![] });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(reader_out, handle) };
        Ok(())
    })
}

/// Open a reader of `target` at a cursor `(generation, offset)` kept from
/// `trib_reader_cursor`. `(0, 0)` is the very beginning: the oldest generation still
/// kept. A generation that is no longer kept, or an offset that is not the start of a
/// committed line of it, is an error.
///
/// Legacy: two numbers do not say which target they were kept for, so nothing stops a
/// cursor of another target from being used here (and skipping lines). Keep a
/// `trib_cursor` (`trib_reader_position`) and use `trib_reader_open_cursor` instead.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `reader_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_open_at(
    target: *const c_char,
    generation: u64,
    offset: u64,
    reader_out: *mut *mut trib_reader,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(reader_out, "reader_out")?;
        if generation == 0 && offset != 0 {
            return Err(Failure::arg(format!(
                "cursor (0, {offset}): generation 0 means the oldest kept generation and needs offset 0"
            )));
        }
        let inner = Reader::open_at(target, Cursor::at(generation, offset))?;
        let handle =
            into_handle(ReaderBox { magic: ReaderBox::MAGIC, poisoned: AtomicBool::new(false), inner, line: vec![] });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(reader_out, handle) };
        Ok(())
    })
}

/// Open a reader of `target` at `cursor`, kept from `trib_reader_position` (or
/// `trib_reader_line_start`, or `trib_cursor_parse` of a kept text). An all-zero cursor
/// is the very beginning: the oldest generation still kept.
///
/// A cursor whose `target_id` is another target's is `TRIB_E_INVALID_ARG` ("cursor ...
/// belongs to target ..., but ... is target ...") and nothing is read: a cursor kept
/// for one target cannot be used on another. A cursor with an empty `target_id` is not
/// checked (legacy). A generation that is no longer kept, or an offset that is not the
/// start of a committed line of it, is `TRIB_E_INVALID_ARG` too.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `cursor` NULL or readable; `reader_out` and
/// `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_open_cursor(
    target: *const c_char,
    cursor: *const trib_cursor,
    reader_out: *mut *mut trib_reader,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(cursor, "cursor")?;
        need(reader_out, "reader_out")?;
        // SAFETY: not NULL (checked above) and readable per the caller's contract.
        let cursor = unsafe { cursor.read() }.to_rust()?;
        let inner = Reader::open_at(target, cursor)?;
        let handle =
            into_handle(ReaderBox { magic: ReaderBox::MAGIC, poisoned: AtomicBool::new(false), inner, line: vec![] });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(reader_out, handle) };
        Ok(())
    })
}

/// Poll interval while `trib_reader_next` waits for new committed lines.
const READER_POLL: Duration = Duration::from_millis(50);

/// The next committed line. On success `*has_line_out` says whether there was one; if
/// so, `*line_out`/`*len_out` are its bytes without the `\n` (never NULL, even for an
/// empty line; followed by a NUL byte not counted in `len`, for convenience: the line
/// itself may contain NULs). That memory belongs to the reader and stays valid until the
/// next call on this reader or `trib_reader_close`; copy what you keep. Without a line,
/// `*line_out` is NULL and `*len_out` 0.
///
/// At the committed end, the call waits up to `wait_ms` for a drain to commit more
/// (re-reading the manifest every 50 ms); 0 returns at once. A long wait cannot be
/// interrupted: follow a target by calling again with a short wait.
///
/// # Safety
/// `reader` must be NULL or an open reader that no other thread is using;
/// `has_line_out`, `line_out`, `len_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_next(
    reader: *mut trib_reader,
    wait_ms: u64,
    has_line_out: *mut bool,
    line_out: *mut *const u8,
    len_out: *mut usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, reader, |r: &mut ReaderBox| {
        need(has_line_out, "has_line_out")?;
        need(line_out, "line_out")?;
        need(len_out, "len_out")?;
        let wait = ms_option(wait_ms, "wait_ms")?;
        let ReaderBox { poisoned, inner, line, .. } = r;
        // The library's one wait loop (Reader::next_line_wait), not a copy of it.
        let next = poisoning(poisoned, || Ok(inner.next_line_wait(READER_POLL, wait)?))?;
        let (has, p, n) = match next {
            Some(mut l) => {
                let n = l.len();
                l.push(0);
                *line = l;
                (true, line.as_ptr(), n)
            }
            None => (false, ptr::null(), 0),
        };
        // SAFETY: the three pointers are not NULL (checked above) and writable per the
        // caller's contract.
        unsafe {
            put(has_line_out, has);
            put(line_out, p);
            put(len_out, n);
        }
        Ok(())
    })
}

/// The byte offset of the next line within the generation being read (see
/// `trib_reader_cursor` for a position that survives managed rotations).
///
/// # Safety
/// `reader` must be NULL or an open reader; `offset_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_offset(
    reader: *const trib_reader,
    offset_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, reader, |r: &ReaderBox| {
        need(offset_out, "offset_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(offset_out, r.inner.offset()) };
        Ok(())
    })
}

/// Where the next line starts: the generation being read and the byte offset in it
/// (without the target's id: see `trib_reader_position`, which gives a cursor that a
/// reader of another target refuses).
///
/// # Safety
/// `reader` must be NULL or an open reader; `generation_out`, `offset_out` and `err_out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_cursor(
    reader: *const trib_reader,
    generation_out: *mut u64,
    offset_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, reader, |r: &ReaderBox| {
        need(generation_out, "generation_out")?;
        need(offset_out, "offset_out")?;
        let c = r.inner.cursor();
        // SAFETY: both not NULL, writable per the caller's contract.
        unsafe {
            put(generation_out, c.generation);
            put(offset_out, c.offset);
        }
        Ok(())
    })
}

/// Where the next line starts, as a `trib_cursor` with the target's id (empty until the
/// target's first drain): keep it to resume later with `trib_reader_open_cursor`. At
/// the end of a generation the reader knows was rotated, it is the start of the next
/// generation (`generation + 1`, offset 0).
///
/// # Safety
/// `reader` must be NULL or an open reader; `cursor_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_position(
    reader: *const trib_reader,
    cursor_out: *mut trib_cursor,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, reader, |r: &ReaderBox| {
        need(cursor_out, "cursor_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(cursor_out, trib_cursor::from_rust(&r.inner.cursor())) };
        Ok(())
    })
}

/// Where the line last returned by `trib_reader_next` starts: its generation, the
/// offset of its first byte, and the target's id. This is the line's identity for
/// results keyed by their source line (the exactly-once pipeline pattern): the same
/// whether the line was read before or after a rotation of its generation (a cursor
/// taken before reading the line is not). `TRIB_E_INVALID_ARG` if the reader has
/// returned no line yet.
///
/// # Safety
/// `reader` must be NULL or an open reader; `cursor_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_line_start(
    reader: *const trib_reader,
    cursor_out: *mut trib_cursor,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, reader, |r: &ReaderBox| {
        need(cursor_out, "cursor_out")?;
        let start = r.inner.line_start().ok_or_else(|| Failure::arg("the reader has returned no line yet"))?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(cursor_out, trib_cursor::from_rust(&start)) };
        Ok(())
    })
}

/// Parse a cursor's text: `<target_id>:<generation>:<offset>`, or the legacy
/// `<generation>:<offset>` (then `target_id` is empty). Anything else is
/// `TRIB_E_INVALID_ARG`, and `*cursor_out` is not touched.
///
/// # Safety
/// `text` must be NULL or NUL-terminated; `cursor_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_cursor_parse(
    text: *const c_char,
    cursor_out: *mut trib_cursor,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        need(text, "text")?;
        need(cursor_out, "cursor_out")?;
        // SAFETY: not NULL (checked above); NUL-terminated per the caller's contract.
        let bytes = unsafe { CStr::from_ptr(text) }.to_bytes();
        let text =
            std::str::from_utf8(bytes).map_err(|_| Failure::arg("the cursor text is not UTF-8 (a cursor is ASCII)"))?;
        let c: Cursor = text.parse()?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(cursor_out, trib_cursor::from_rust(&c)) };
        Ok(())
    })
}

/// Write `cursor`'s text (`<target_id>:<generation>:<offset>`, or
/// `<generation>:<offset>` when its `target_id` is empty) and a NUL to `buf`, which must
/// hold at least `TRIB_CURSOR_TEXT_LEN` (75) bytes (`buf_len`).
///
/// # Safety
/// `cursor` must be NULL or readable; `buf` NULL or `buf_len` writable bytes; `err_out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_cursor_format(
    cursor: *const trib_cursor,
    buf: *mut c_char,
    buf_len: usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        need(cursor, "cursor")?;
        need(buf, "buf")?;
        if buf_len < TRIB_CURSOR_TEXT_LEN {
            return Err(Failure::arg(format!("`buf_len` is {buf_len}, at least {TRIB_CURSOR_TEXT_LEN} is needed")));
        }
        // SAFETY: not NULL (checked above) and readable per the caller's contract.
        let c = unsafe { cursor.read() }.to_rust()?;
        let mut text = c.to_string().into_bytes();
        debug_assert!(text.len() < TRIB_CURSOR_TEXT_LEN);
        text.push(0);
        // SAFETY: `buf` is not NULL and has at least TRIB_CURSOR_TEXT_LEN writable bytes
        // (checked above, caller's contract), more than `text`; they do not overlap.
        unsafe { ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), buf, text.len()) };
        Ok(())
    })
}

/// How far a reader is behind the committed end (`trib_reader_lag`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct trib_lag {
    /// Committed bytes after the reader's position (the rest of its generation, every
    /// later kept generation, the current one's committed part); 0: caught up.
    pub bytes: u64,
    /// Generations after the one the reader is in (0: it reads the current one).
    pub later_generations: u64,
}

impl From<Lag> for trib_lag {
    fn from(l: Lag) -> Self {
        trib_lag { bytes: l.bytes, later_generations: l.later_generations }
    }
}

/// How far the reader is behind the committed end, as of a fresh read of the manifest
/// (cheap: two 4 KiB reads of the lock file, nothing of the target; lines are not
/// counted, that would need a scan). It does not move the reader. `bytes` 0: caught up.
/// Fails as a read would (a generation no longer kept, a replaced target).
///
/// # Safety
/// `reader` must be NULL or an open reader that no other thread is using; `lag_out`
/// and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_lag(
    reader: *mut trib_reader,
    lag_out: *mut trib_lag,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, reader, |r: &mut ReaderBox| {
        need(lag_out, "lag_out")?;
        let ReaderBox { poisoned, inner, .. } = r;
        let lag = poisoning(poisoned, || Ok(inner.lag()?))?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(lag_out, lag.into()) };
        Ok(())
    })
}

/// Close a reader (NULL is accepted and ignored); a line it handed out becomes invalid.
///
/// # Safety
/// `reader` must be NULL or an open reader, not used again.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_close(reader: *mut trib_reader) {
    // SAFETY: NULL or a live reader, not used again (caller's contract).
    unsafe { free_handle::<ReaderBox>(reader) }
}
