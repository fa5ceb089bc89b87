package tributary

/*
#include <stdlib.h>
#include "tributary.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// Durability says when an append returns.
type Durability int

const (
	// DurabilityFull: the journal is fsynced before an append returns; an
	// acknowledged line survives a power cut (the default).
	DurabilityFull Durability = C.TRIB_DURABILITY_FULL
	// DurabilityNormal: an acknowledged line survives a crash of the process, not
	// of the machine (SQLite synchronous=NORMAL); appends are much cheaper.
	DurabilityNormal Durability = C.TRIB_DURABILITY_NORMAL
)

func (d Durability) String() string {
	switch d {
	case DurabilityFull:
		return "full"
	case DurabilityNormal:
		return "normal"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// DefaultMaxLineBytes is the longest line accepted unless configured otherwise
// (1 MiB, without the '\n').
const DefaultMaxLineBytes = 1 << 20

// JournalOptions configure OpenJournal. The zero value (or a nil pointer) means the
// defaults; a zero field keeps its default.
type JournalOptions struct {
	// Durability: DurabilityFull (default) or DurabilityNormal.
	Durability Durability
	// MaxLineBytes is the longest accepted line, without the '\n' (default 1 MiB).
	// Longer lines are refused with ErrInvalidLine.
	MaxLineBytes int
	// MaxBacklogBytes refuses appends (ErrJournalFull) once the undrained lines
	// would exceed this many bytes. 0: no limit.
	MaxBacklogBytes uint64
	// FullWait, with MaxBacklogBytes: how long an append waits for a drain to make
	// room before failing with ErrJournalFull. 0: fail at once.
	FullWait time.Duration
	// KeyRetention is how long an AppendKeyed key is remembered (default 7 days).
	KeyRetention time.Duration
	// BusyTimeout is how long to wait for another process's write lock on this
	// journal's SQLite file (default 30 s).
	BusyTimeout time.Duration
	// AllowNetworkFS accepts a journal on a network filesystem. Only for mounts
	// that really are host-local: SQLite WAL needs shared memory only one host sees.
	AllowNetworkFS bool
}

func (o *JournalOptions) toC(op string) (C.trib_journal_options, error) {
	var c C.trib_journal_options
	var cerr *C.trib_error
	if err := callError(op, C.trib_journal_options_default(&c, &cerr), cerr); err != nil {
		return c, err
	}
	if o == nil {
		return c, nil
	}
	if o.Durability < 0 || o.Durability > 0xffffffff {
		return c, argError(op, fmt.Sprintf("Durability is %d; use DurabilityFull or DurabilityNormal", o.Durability))
	}
	c.durability = C.uint32_t(o.Durability)
	if o.MaxLineBytes < 0 {
		return c, argError(op, fmt.Sprintf("MaxLineBytes is negative (%d)", o.MaxLineBytes))
	}
	if o.MaxLineBytes > 0 {
		c.max_line_bytes = C.size_t(o.MaxLineBytes)
	}
	c.max_backlog_bytes = C.uint64_t(o.MaxBacklogBytes)
	var err error
	if c.full_wait_ms, err = millis(op, "FullWait", o.FullWait); err != nil {
		return c, err
	}
	if o.KeyRetention != 0 {
		if c.key_retention_ms, err = millis(op, "KeyRetention", o.KeyRetention); err != nil {
			return c, err
		}
	}
	if o.BusyTimeout != 0 {
		if c.busy_timeout_ms, err = millis(op, "BusyTimeout", o.BusyTimeout); err != nil {
			return c, err
		}
	}
	c.allow_network_fs = C.bool(o.AllowNetworkFS)
	return c, nil
}

// A Journal is the writer side: an SQLite file on this host's local disk that holds
// appended lines until a drain moves them into the target.
//
// A Journal is safe for concurrent use by many goroutines, and they should share
// one: concurrent appends are group-committed (one fsync covers every line that was
// waiting, and each call returns when its own line is durable). Several Journals, in
// one or several processes, may also open the same file.
type Journal struct {
	// h is the library handle; calls share it (a trib_journal is thread-safe), Close
	// waits for them (see owned).
	h       owned[*C.trib_journal]
	path    string
	id      atomic.Pointer[string] // replaced when a Writer or SlogHandler reopens the path
	maxLine int
	opts    *JournalOptions // as opened, to open the path again (reopen)
}

// OpenJournal opens the journal at path, creating it (mode 0600) if it does not
// exist. opts may be nil for the defaults. A journal on a network filesystem is
// refused with ErrUnsafeFilesystem (see JournalOptions.AllowNetworkFS); a file that
// is not a journal with ErrNotAJournal.
//
// Close the journal when done. Lines whose append returned are already durable;
// Close adds nothing to that.
func OpenJournal(path string, opts *JournalOptions) (*Journal, error) {
	const op = "open journal"
	copts, err := opts.toC(op)
	if err != nil {
		return nil, err
	}
	cpath, err := cString(op, "path", path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	var h *C.trib_journal
	var cerr *C.trib_error
	if err := callError(op, C.trib_journal_open(cpath, &copts, &h, &cerr), cerr); err != nil {
		return nil, err
	}
	var buf [C.TRIB_ID_BUF_LEN]C.char
	if err := callError(op, C.trib_journal_id(h, &buf[0], C.size_t(len(buf)), &cerr), cerr); err != nil {
		C.trib_journal_close(h)
		return nil, err
	}
	id := goID(&buf)
	j := &Journal{path: path, maxLine: int(copts.max_line_bytes)}
	j.id.Store(&id)
	if opts != nil {
		kept := *opts
		j.opts = &kept
	}
	j.h = owned[*C.trib_journal]{p: h, free: func(h *C.trib_journal) { C.trib_journal_close(h) }, what: "journal"}
	// A backstop only: a Journal that is garbage-collected unclosed is closed here.
	runtime.SetFinalizer(j, func(j *Journal) { j.h.finalize() })
	return j, nil
}

// Path is the path the journal was opened with.
func (j *Journal) Path() string { return j.path }

// ID is the journal's random 128-bit id (32 hex digits), made when the file was
// created; the target's manifest keeps one watermark per journal id.
func (j *Journal) ID() string { return *j.id.Load() }

// MaxLineBytes is the longest line this journal accepts.
func (j *Journal) MaxLineBytes() int { return j.maxLine }

func (j *Journal) String() string { return "tributary.Journal(" + j.path + ")" }

// handle returns the open handle for a call (shared with other calls); the caller
// must call j.release() when its C call has returned.
func (j *Journal) handle(op string) (*C.trib_journal, error) {
	return j.h.shared(op)
}

func (j *Journal) release() {
	j.h.mu.RUnlock()
	runtime.KeepAlive(j)
}

// Append stores one line (without '\n'; any other bytes, invalid UTF-8 included;
// an empty line is a line) and returns its seq once it is durable. A line that
// contains '\n' or is longer than MaxLineBytes is refused with ErrInvalidLine and
// nothing is stored; a full journal gives ErrJournalFull.
func (j *Journal) Append(line []byte) (uint64, error) {
	const op = "append"
	h, err := j.handle(op)
	if err != nil {
		return 0, err
	}
	defer j.release()
	p, n := bytesArg(line)
	var seq C.uint64_t
	var cerr *C.trib_error
	if err := callError(op, C.trib_journal_append(h, p, n, &seq, &cerr), cerr); err != nil {
		return 0, err
	}
	return uint64(seq), nil
}

// AppendString is Append for a string, without copying it.
func (j *Journal) AppendString(line string) (uint64, error) {
	const op = "append"
	h, err := j.handle(op)
	if err != nil {
		return 0, err
	}
	defer j.release()
	p, n := stringArg(line)
	var seq C.uint64_t
	var cerr *C.trib_error
	if err := callError(op, C.trib_journal_append(h, p, n, &seq, &cerr), cerr); err != nil {
		return 0, err
	}
	return uint64(seq), nil
}

// AppendBatch stores lines all-or-nothing in one transaction and returns the seq of
// the first; they get consecutive seqs. One refused line refuses the whole batch
// (ErrInvalidLine; the *Error's LineIndex says which line). An empty batch is
// ErrInvalidArgument: it has no first seq.
func (j *Journal) AppendBatch(lines [][]byte) (uint64, error) {
	const op = "append batch"
	h, err := j.handle(op)
	if err != nil {
		return 0, err
	}
	defer j.release()
	// The slice array lives in Go memory and points at the lines' Go memory: cgo
	// allows that only for pinned pointers.
	var pinner runtime.Pinner
	defer pinner.Unpin()
	slices := pinnedSlices(&pinner, lines)
	var seq C.uint64_t
	var cerr *C.trib_error
	rc := C.trib_journal_append_batch(h, firstSlice(slices), C.size_t(len(slices)), &seq, &cerr)
	if err := callError(op, rc, cerr); err != nil {
		return 0, err
	}
	return uint64(seq), nil
}

// AppendKeyed stores line once per idempotency key: a retry with a key seen within
// KeyRetention stores nothing and returns the first call's seq. A writer that
// crashed before it saw the acknowledgement can resend with the same key. The key
// may be any non-empty bytes (an empty key is ErrInvalidArgument).
func (j *Journal) AppendKeyed(key, line []byte) (uint64, error) {
	const op = "append keyed"
	h, err := j.handle(op)
	if err != nil {
		return 0, err
	}
	defer j.release()
	kp, kn := bytesArg(key)
	lp, ln := bytesArg(line)
	var seq C.uint64_t
	var cerr *C.trib_error
	if err := callError(op, C.trib_journal_append_keyed(h, kp, kn, lp, ln, &seq, &cerr), cerr); err != nil {
		return 0, err
	}
	return uint64(seq), nil
}

// KeyedAppend is what one keyed append did: the line's Seq, and whether this call
// Stored it. Stored is false when the key was already stored (by an earlier call, or
// an earlier line of the same batch): nothing was stored, a retry was absorbed, and
// Seq is the earlier line's. Exact with any number of writers on the journal.
type KeyedAppend struct {
	Seq    uint64
	Stored bool
}

// AppendKeyedOutcome is AppendKeyed saying whether this call stored the line or a
// retry was absorbed (comparing Backlog().LastSeq works only with one writer).
func (j *Journal) AppendKeyedOutcome(key, line []byte) (KeyedAppend, error) {
	const op = "append keyed"
	h, err := j.handle(op)
	if err != nil {
		return KeyedAppend{}, err
	}
	defer j.release()
	kp, kn := bytesArg(key)
	lp, ln := bytesArg(line)
	var out C.trib_keyed_append
	var cerr *C.trib_error
	rc := C.trib_journal_append_keyed_outcome(h, kp, kn, lp, ln, &out, &cerr)
	if err := callError(op, rc, cerr); err != nil {
		return KeyedAppend{}, err
	}
	return KeyedAppend{Seq: uint64(out.seq), Stored: bool(out.stored)}, nil
}

// pinnedSlices is the C array of (pointer, length) pairs of lines, with every line
// pinned (cgo allows Go memory that points to Go memory only when pinned). The array
// is nil for no lines.
func pinnedSlices(pinner *runtime.Pinner, lines [][]byte) []C.trib_slice {
	if len(lines) == 0 {
		return nil
	}
	slices := make([]C.trib_slice, len(lines))
	for i, l := range lines {
		if len(l) > 0 {
			pinner.Pin(unsafe.SliceData(l))
		}
		slices[i].ptr, slices[i].len = bytesArg(l)
	}
	return slices
}

func firstSlice(s []C.trib_slice) *C.trib_slice {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// AppendKeyedBatch stores lines[i] under the idempotency key keys[i], all-or-nothing
// in one transaction (one fsync for the whole batch, not one per event), each once
// per key as AppendKeyed does; it returns each line's KeyedAppend. A key repeated in
// the batch is stored by its first line, the later ones absorbed. keys and lines must
// have the same length; an empty batch does nothing.
func (j *Journal) AppendKeyedBatch(keys, lines [][]byte) ([]KeyedAppend, error) {
	const op = "append keyed batch"
	if len(keys) != len(lines) {
		return nil, argError(op, fmt.Sprintf("%d keys for %d lines: give one key per line", len(keys), len(lines)))
	}
	if len(lines) == 0 {
		return nil, nil
	}
	h, err := j.handle(op)
	if err != nil {
		return nil, err
	}
	defer j.release()
	var pinner runtime.Pinner
	defer pinner.Unpin()
	ks := pinnedSlices(&pinner, keys)
	ls := pinnedSlices(&pinner, lines)
	outs := make([]C.trib_keyed_append, len(lines))
	var cerr *C.trib_error
	rc := C.trib_journal_append_keyed_batch(h, firstSlice(ks), firstSlice(ls), C.size_t(len(lines)), &outs[0], &cerr)
	if err := callError(op, rc, cerr); err != nil {
		return nil, err
	}
	res := make([]KeyedAppend, len(outs))
	for i, o := range outs {
		res[i] = KeyedAppend{Seq: uint64(o.seq), Stored: bool(o.stored)}
	}
	return res, nil
}

// AppendBatchWithCursor stores lines (zero or more) AND records c under name in the
// journal's own file, in ONE transaction: both are durable or neither is. It is for a
// program that reads a target, appends what it derived from it here, and must
// remember how far it read atomically with those results: a crash never leaves
// results without their cursor, or a cursor without its results. Read it back with
// Cursor(name) and resume with OpenReaderAt. It returns the first line's seq, or 0
// when lines is empty (only the cursor is recorded).
//
// One name follows one target: a Cursor whose TargetID differs from the one name
// holds, or that has none (a legacy cursor; CursorStart excepted, which resets the
// name), is ErrInvalidArgument, as is one no reader opens at (generation 0 with an
// offset), and nothing is stored.
func (j *Journal) AppendBatchWithCursor(lines [][]byte, name string, c Cursor) (uint64, error) {
	const op = "append batch with cursor"
	if c.Offset < 0 {
		return 0, argError(op, fmt.Sprintf("cursor %v: the offset is negative", c))
	}
	cc, err := c.toC(op)
	if err != nil {
		return 0, err
	}
	cname, err := cName(op, name)
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(cname))
	h, err := j.handle(op)
	if err != nil {
		return 0, err
	}
	defer j.release()
	var pinner runtime.Pinner
	defer pinner.Unpin()
	ls := pinnedSlices(&pinner, lines)
	var seq C.uint64_t
	var cerr *C.trib_error
	rc := C.trib_journal_append_batch_with_cursor(h, firstSlice(ls), C.size_t(len(ls)), cname, &cc, &seq, &cerr)
	if err := callError(op, rc, cerr); err != nil {
		return 0, err
	}
	return uint64(seq), nil
}

// Cursor returns the cursor last recorded under name by AppendBatchWithCursor; ok is
// false if there is none.
func (j *Journal) Cursor(name string) (c Cursor, ok bool, err error) {
	const op = "journal cursor"
	cname, err := cName(op, name)
	if err != nil {
		return Cursor{}, false, err
	}
	defer C.free(unsafe.Pointer(cname))
	h, err := j.handle(op)
	if err != nil {
		return Cursor{}, false, err
	}
	defer j.release()
	var out C.trib_cursor
	var found C.bool
	var cerr *C.trib_error
	if err := callError(op, C.trib_journal_cursor(h, cname, &out, &found, &cerr), cerr); err != nil {
		return Cursor{}, false, err
	}
	if !found {
		return Cursor{}, false, nil
	}
	return cursorFromC(&out), true, nil
}

// Backlog is what waits in a journal, and its seq counters.
type Backlog struct {
	Lines uint64 // lines appended and not yet drained
	Bytes uint64 // their bytes, without '\n's
	// OldestAppend is when the oldest waiting line was appended (zero when none).
	OldestAppend time.Time
	LastSeq      uint64 // highest seq ever assigned (0 for a journal never written to)
	DrainedSeq   uint64 // highest seq recorded as drained
}

func goBacklog(b *C.trib_backlog) Backlog {
	out := Backlog{
		Lines:      uint64(b.lines),
		Bytes:      uint64(b.bytes),
		LastSeq:    uint64(b.last_seq),
		DrainedSeq: uint64(b.drained_seq),
	}
	if b.oldest_append_ms != 0 {
		out.OldestAppend = time.UnixMilli(int64(b.oldest_append_ms))
	}
	return out
}

// Backlog reports what waits in the journal.
func (j *Journal) Backlog() (Backlog, error) {
	const op = "backlog"
	h, err := j.handle(op)
	if err != nil {
		return Backlog{}, err
	}
	defer j.release()
	var b C.trib_backlog
	var cerr *C.trib_error
	if err := callError(op, C.trib_journal_backlog(h, &b, &cerr), cerr); err != nil {
		return Backlog{}, err
	}
	return goBacklog(&b), nil
}

// Close releases the journal. It waits for calls in progress on other goroutines;
// later calls fail with ErrClosed. Closing twice is harmless: Close always returns
// nil (every acknowledged line is already durable).
func (j *Journal) Close() error {
	if j.h.close() {
		runtime.SetFinalizer(j, nil)
	}
	return nil
}

// appendLines is how a Writer or a SlogHandler hands over whole lines: one batch,
// durable when it returns, all or nothing.
//
// A journal retired or removed under the handle (ErrJournalGone: nothing of the batch
// was stored) is opened again at its path and the batch sent there: a logger outlives
// its journal's retirement (`compact --retire-idle`, `tributary retire`); every later
// record was lost (an outside tester).
func (j *Journal) appendLines(lines [][]byte) (int, error) {
	for reopened := 0; ; reopened++ {
		var err error
		if len(lines) == 1 {
			_, err = j.Append(lines[0])
		} else {
			_, err = j.AppendBatch(lines)
		}
		if err == nil {
			return len(lines), nil
		}
		if !errors.Is(err, ErrJournalGone) || reopened >= reopenAttempts || j.reopen() != nil {
			return 0, err
		}
	}
}

// reopenAttempts bounds appendLines' reopening (a name retired as fast as it is made).
const reopenAttempts = 20

// reopen replaces the handle with the journal opened again at its path, after the
// calls in progress; an error when the Journal is closed or the open fails.
func (j *Journal) reopen() error {
	fresh, err := OpenJournal(j.path, j.opts)
	if err != nil {
		return err
	}
	runtime.SetFinalizer(fresh, nil)
	j.h.mu.Lock()
	defer j.h.mu.Unlock()
	if j.h.isClosed() {
		fresh.h.freeLocked()
		return closedError("append", j.h.what)
	}
	j.h.freeLocked()
	j.h.p, fresh.h.p = fresh.h.p, nil
	j.id.Store(fresh.id.Load())
	return nil
}
