package tributary

/*
#include <stdlib.h>
#include "tributary.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// pollSlice is the longest single wait inside the library while a Reader waits for
// new committed lines: the library cannot be interrupted, so a cancelled context is
// noticed within this long.
const pollSlice = 100 * time.Millisecond

// A Cursor is a reading position in a target: a generation of the target, the byte
// offset of a line's start in it, and the id of the target it belongs to. It stays
// valid across managed rotations (DrainOptions.RotateBytes, RotateLines): a rotated
// generation lives on as "<target>.<generation>" and a Reader opened at a Cursor in it
// reads it to the end and goes on into the next generation. Keep the Cursor of the last
// line you processed (Line.Cursor, or Reader.Cursor) and reopen with OpenReaderAt to
// continue after it, without losing or repeating a line.
//
// A Cursor names one position of ONE target: OpenReaderAt refuses a Cursor whose
// TargetID is another target's (ErrInvalidArgument, reading nothing). A Cursor without
// a TargetID (a legacy cursor: two numbers kept by an earlier version, or the text
// "generation:offset") cannot be checked and opens on any target.
//
// To key results derived from a line (exactly-once pipelines), use where the line
// starts (Line.Start, Reader.LineStart), not the Cursor before or after it: the start
// is the same whether the line is read before or after the rotation of its generation.
//
// The zero value, CursorStart, is the very beginning: the start of the oldest
// generation still kept, on any target. A Cursor is a plain value: compare it with
// ==, store its fields, or its String form and ParseCursor.
type Cursor struct {
	// Generation is the target's generation: 1 until the first managed rotation,
	// then one more per rotation. 0 only in CursorStart.
	Generation uint64
	// Offset is the byte offset in that generation of the start of the next line.
	Offset int64
	// TargetID is the id of the target the Cursor belongs to (32 lower-case hex
	// digits, as Status reports it), or "": CursorStart, a legacy cursor, or the
	// position of a Reader of a target that does not exist yet (it learns the id when
	// the target appears).
	TargetID string
}

// CursorStart is the zero Cursor: the start of the oldest generation still kept
// (retention may have removed older ones), on any target.
var CursorStart = Cursor{}

// String formats c as "target_id:generation:offset", or "generation:offset" without
// a TargetID: the forms ParseCursor reads (and the Rust crate, the CLI, Python and C
// print).
func (c Cursor) String() string {
	s := strconv.FormatUint(c.Generation, 10) + ":" + strconv.FormatInt(c.Offset, 10)
	if c.TargetID != "" {
		s = c.TargetID + ":" + s
	}
	return s
}

// ParseCursor reads a Cursor in the "target_id:generation:offset" form of
// Cursor.String, or the legacy "generation:offset" (no TargetID).
func ParseCursor(s string) (Cursor, error) {
	const op = "parse cursor"
	bad := func(why string) (Cursor, error) {
		return Cursor{}, argError(op, fmt.Sprintf("cursor %q: %s; a cursor is target_id:generation:offset "+
			"(32 hex digits and two non-negative integers) or the legacy generation:offset", s, why))
	}
	digits := func(t string) bool {
		for _, b := range []byte(t) {
			if b < '0' || b > '9' {
				return false
			}
		}
		return t != ""
	}
	parts := strings.Split(s, ":")
	var c Cursor
	switch len(parts) {
	case 2:
	case 3:
		id := strings.ToLower(parts[0])
		if len(id) != idHexDigits || strings.Trim(id, "0123456789abcdef") != "" {
			return bad(fmt.Sprintf("bad target id %q", parts[0]))
		}
		c.TargetID = id
		parts = parts[1:]
	default:
		return bad("not two or three fields separated by ':'")
	}
	if !digits(parts[0]) || !digits(parts[1]) {
		return bad("the generation and the offset must be non-negative integers")
	}
	gen, err1 := strconv.ParseUint(parts[0], 10, 64)
	off, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return bad("a number is too large")
	}
	if gen == 0 && off != 0 {
		return bad("generation 0 (CursorStart) needs offset 0")
	}
	c.Generation, c.Offset = gen, off
	return c, nil
}

// toC is c as the C ABI's trib_cursor.
func (c Cursor) toC(op string) (C.trib_cursor, error) {
	var out C.trib_cursor
	if len(c.TargetID) >= len(out.target_id) || strings.IndexByte(c.TargetID, 0) >= 0 {
		return out, argError(op, fmt.Sprintf("cursor %v: TargetID %q is not 32 hex digits", c, c.TargetID))
	}
	out.generation = C.uint64_t(c.Generation)
	out.offset = C.uint64_t(c.Offset)
	for i := 0; i < len(c.TargetID); i++ {
		out.target_id[i] = C.char(c.TargetID[i])
	}
	return out, nil
}

func cursorFromC(c *C.trib_cursor) Cursor {
	return Cursor{
		Generation: uint64(c.generation),
		Offset:     int64(c.offset),
		TargetID:   C.GoString(&c.target_id[0]),
	}
}

// A Reader reads a target's committed lines from a Cursor (fan-out). It never shows
// a byte beyond what the manifest committed, so never a torn or uncommitted tail; a
// target that was never drained has no lines yet. It follows managed rotations: at
// the end of a rotated generation it goes on at the start of the next one. Many
// Readers, in any process on any host, may read the same target; each gets every
// line.
//
// A Reader is one cursor. Its methods may be called from any goroutine (they are
// serialized), but a Reader is meant for one consumer: give each consumer its own.
type Reader struct {
	// h is the library handle; calls take it exclusively (a trib_reader is
	// single-threaded), Close waits for them (see owned). h.mu also guards pending.
	h      owned[*C.trib_reader]
	target string
	// pending is a line read from the library but given back (Lines stopped before
	// delivering it): the next read returns it. Guarded by h.mu.
	pending *Line

	curMu     sync.Mutex
	cursor    Cursor // just after the last line returned (or read ahead by Lines)
	lineStart Cursor // where the last line returned (or read ahead by Lines) starts

	following atomic.Bool   // a Lines goroutine owns the reader
	closed    chan struct{} // closed by Close: unblocks a Lines goroutine
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error // the terminal error of the last Lines
}

// Line is one committed line delivered by Reader.Lines.
type Line struct {
	// Bytes is the line without its '\n' (a copy: the caller owns it).
	Bytes []byte
	// Start is where this line starts (its generation and the offset of its first
	// byte, with the target's id): the line's identity, to key results derived from
	// it. It is the same whether the line is read before or after the rotation of its
	// generation (the Cursor after the previous line is not: "g:end of g" or
	// "g+1:0").
	Start Cursor
	// Cursor is the position just after this line: keep it once the line is
	// processed, and reopen with OpenReaderAt to continue after it (across managed
	// rotations too).
	Cursor Cursor
	// Offset is Cursor.Offset: the byte offset just after this line within its
	// generation (Cursor.Generation). It is enough for OpenReader only on a target
	// that is never rotated; keep Cursor instead.
	Offset int64
	// Err is set on the last value the channel delivers when following failed
	// (Bytes is then nil, and Cursor is where the reader stands); Reader.Err
	// returns it too.
	Err error
}

// OpenReader opens a reader of target at byte offset of its current generation (0,
// or an Offset obtained from a Reader or a Line of that generation: the start of a
// committed line). An offset beyond the committed length or not at the start of a
// line is ErrInvalidArgument. On a target with managed rotation, keep Cursors and use
// OpenReaderAt instead: an offset alone does not say which generation it is in.
func OpenReader(target string, offset int64) (*Reader, error) {
	const op = "open reader"
	if offset < 0 {
		return nil, argError(op, fmt.Sprintf("offset %d is negative", offset))
	}
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var h *C.trib_reader
	var cerr *C.trib_error
	if err := callError(op, C.trib_reader_open(ctarget, C.uint64_t(offset), &h, &cerr), cerr); err != nil {
		return nil, err
	}
	return newReader(op, h, target)
}

// OpenReaderAt opens a reader of target at cursor c, kept from Line.Cursor or
// Reader.Cursor of an earlier reader; it continues across managed rotations.
// CursorStart (the zero Cursor) starts at the oldest generation still kept.
//
// A Cursor whose TargetID is another target's is ErrInvalidArgument ("cursor ...
// belongs to target ..., but ... is target ..."), and nothing is read: a Cursor kept
// for one target cannot be used on another. A Cursor without a TargetID is not
// checked.
//
// A cursor in a generation that retention has removed
// (DrainOptions.RetainGenerations), in a generation that does not exist yet, beyond
// the committed length of its generation or not at the start of a line is
// ErrInvalidArgument; the error's message names the oldest generation still kept.
// (A reader that fell that far behind has lost lines to retention: reopen at
// CursorStart to go on with what is left.)
func OpenReaderAt(target string, c Cursor) (*Reader, error) {
	const op = "open reader"
	if c.Offset < 0 {
		return nil, argError(op, fmt.Sprintf("cursor %v: the offset is negative", c))
	}
	if c.Generation == 0 && c.Offset != 0 {
		return nil, argError(op, fmt.Sprintf("cursor %v: generation 0 (CursorStart) needs offset 0", c))
	}
	cc, err := c.toC(op)
	if err != nil {
		return nil, err
	}
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var h *C.trib_reader
	var cerr *C.trib_error
	rc := C.trib_reader_open_cursor(ctarget, &cc, &h, &cerr)
	if err := callError(op, rc, cerr); err != nil {
		return nil, err
	}
	return newReader(op, h, target)
}

// newReader wraps a new library reader, its cursor read from the library (which
// resolves CursorStart and OpenReader's current generation).
func newReader(op string, h *C.trib_reader, target string) (*Reader, error) {
	c, err := libCursor(op, h)
	if err != nil {
		C.trib_reader_close(h)
		return nil, err
	}
	r := &Reader{target: target, closed: make(chan struct{}), cursor: c}
	r.h = owned[*C.trib_reader]{p: h, free: func(h *C.trib_reader) { C.trib_reader_close(h) }, what: "reader"}
	// A backstop only: a Reader that is garbage-collected unclosed is closed here.
	runtime.SetFinalizer(r, func(r *Reader) { r.h.finalize() })
	return r, nil
}

// libCursor is the library reader's position: where its next line starts.
func libCursor(op string, h *C.trib_reader) (Cursor, error) {
	var c C.trib_cursor
	var cerr *C.trib_error
	if err := callError(op, C.trib_reader_position(h, &c, &cerr), cerr); err != nil {
		return Cursor{}, err
	}
	return cursorFromC(&c), nil
}

// libLineStart is where the line the library reader returned last starts.
func libLineStart(op string, h *C.trib_reader) (Cursor, error) {
	var c C.trib_cursor
	var cerr *C.trib_error
	if err := callError(op, C.trib_reader_line_start(h, &c, &cerr), cerr); err != nil {
		return Cursor{}, err
	}
	return cursorFromC(&c), nil
}

// Target is the target's path.
func (r *Reader) Target() string { return r.target }

// Cursor is the reader's position: just after the last line it returned, where a
// Reader opened with OpenReaderAt would continue. Right after opening, it is where
// the reader starts (CursorStart resolved to the oldest generation kept). While Lines
// runs, the reader may be one line ahead of what the channel has delivered: keep
// Line.Cursor instead. After the Lines channel is closed, Cursor is again just after
// the last line delivered.
func (r *Reader) Cursor() Cursor {
	r.curMu.Lock()
	defer r.curMu.Unlock()
	return r.cursor
}

// Offset is Cursor().Offset: the byte offset just after the last line returned,
// within the generation Cursor().Generation. Prefer Cursor on a target with managed
// rotation.
func (r *Reader) Offset() int64 { return r.Cursor().Offset }

// LineStart is where the last line returned by Next or TryNext starts (its
// generation, the offset of its first byte, the target's id): the line's identity, to
// key results derived from it; the same whether the line was read before or after the
// rotation of its generation. The zero Cursor before the first line. While Lines runs,
// the reader may be one line ahead: use Line.Start instead.
func (r *Reader) LineStart() Cursor {
	r.curMu.Lock()
	defer r.curMu.Unlock()
	return r.lineStart
}

func (r *Reader) setCursor(c Cursor) {
	r.curMu.Lock()
	r.cursor = c
	r.curMu.Unlock()
}

func (r *Reader) setPosition(after, start Cursor) {
	r.curMu.Lock()
	r.cursor, r.lineStart = after, start
	r.curMu.Unlock()
}

// next returns the next committed line, waiting up to wait inside the library.
func (r *Reader) next(op string, wait time.Duration) (Line, bool, error) {
	h, err := r.h.exclusive(op)
	if err != nil {
		return Line{}, false, err
	}
	defer r.h.mu.Unlock()
	if p := r.pending; p != nil {
		r.pending = nil
		r.setPosition(p.Cursor, p.Start)
		return *p, true, nil
	}
	var has C.bool
	var p *C.uint8_t
	var n C.size_t
	var cerr *C.trib_error
	rc := C.trib_reader_next(h, C.uint64_t(wait/time.Millisecond), &has, &p, &n, &cerr)
	if err := callError(op, rc, cerr); err != nil {
		return Line{}, false, err
	}
	if !has {
		return Line{}, false, nil
	}
	// The library's buffer is valid until the next call on this reader: copy.
	line := make([]byte, int(n))
	copy(line, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	// The position after the line (the library may have moved on to the next
	// generation to read it), and where the line starts.
	c, err := libCursor(op, h)
	if err != nil {
		return Line{}, false, err
	}
	start, err := libLineStart(op, h)
	runtime.KeepAlive(r)
	if err != nil {
		return Line{}, false, err
	}
	r.setPosition(c, start)
	return Line{Bytes: line, Start: start, Cursor: c, Offset: c.Offset}, true, nil
}

// giveBack makes a line read but not delivered the next one to be read again, and
// moves the cursor (and the last line's start) back to before it.
func (r *Reader) giveBack(l Line, before, beforeStart Cursor) {
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	if r.h.isClosed() { // closed meanwhile: nothing will be read again
		return
	}
	r.pending = &l
	r.setPosition(before, beforeStart)
}

func (r *Reader) busy(op string) error {
	if r.following.Load() {
		return argError(op, "the reader is being followed by Lines; use the channel, or another Reader")
	}
	return nil
}

// TryNext returns the next committed line without waiting: ok is false at the
// committed end. Cursor then tells where the reader stands.
func (r *Reader) TryNext() (line []byte, ok bool, err error) {
	if err := r.busy("next"); err != nil {
		return nil, false, err
	}
	l, ok, err := r.next("next", 0)
	return l.Bytes, ok, err
}

// Next returns the next committed line (without '\n'), waiting for a drain to
// commit one for as long as ctx allows: with a context that is never done it waits
// indefinitely. It returns ctx.Err() when ctx is done first; the reader's cursor is
// then unchanged. A cancellation is noticed within 100 ms (the library waits in
// slices of at most that long).
func (r *Reader) Next(ctx context.Context) ([]byte, error) {
	if err := r.busy("next"); err != nil {
		return nil, err
	}
	l, err := r.nextCtx(ctx)
	return l.Bytes, err
}

func (r *Reader) nextCtx(ctx context.Context) (Line, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Line{}, err
		}
		wait := pollSlice
		deadline, hasDeadline := ctx.Deadline()
		if hasDeadline {
			wait = min(wait, time.Until(deadline))
		}
		line, ok, err := r.next("next", max(wait, 0))
		if err != nil || ok {
			return line, err
		}
		if hasDeadline && !time.Now().Before(deadline) {
			return Line{}, context.DeadlineExceeded
		}
	}
}

// Lines follows the target: it delivers every committed line from the reader's
// cursor on, then waits for drains to commit more, until ctx is done or the reader
// is closed; then the channel is closed. It follows managed rotations: every line
// of every generation is delivered once, in order, and each Line carries its Start
// and the Cursor after it. If reading fails (the target was truncated behind tributary's back, its
// manifest is corrupt, retention removed the generation being read, ...), the last
// value carries the error in Line.Err and the channel is closed; Err returns that
// error too.
//
// While Lines runs, the reader belongs to it: Next and TryNext fail, and a second
// Lines delivers a single error. When the channel is closed, Cursor is just after
// the last line delivered (a line read but not delivered because ctx ended is given
// back), so the reader can be followed again or its Cursor kept.
func (r *Reader) Lines(ctx context.Context) <-chan Line {
	ch := make(chan Line)
	if !r.following.CompareAndSwap(false, true) {
		err := argError("lines", "the reader is already being followed by Lines")
		c := r.Cursor()
		go func() { ch <- Line{Err: err, Cursor: c, Offset: c.Offset}; close(ch) }()
		return ch
	}
	r.setErr(nil)
	go r.follow(ctx, ch)
	return ch
}

func (r *Reader) follow(ctx context.Context, ch chan<- Line) {
	defer close(ch)
	defer r.following.Store(false)
	for {
		before, beforeStart := r.Cursor(), r.LineStart()
		line, err := r.nextCtx(ctx)
		if err != nil {
			// (nextCtx may see the deadline pass before ctx's own timer fires: a
			// deadline reached is a stop, not a failure, even while ctx.Err is nil)
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed) {
				return // stopped, not failed
			}
			r.setErr(err)
			select {
			case ch <- Line{Err: err, Cursor: before, Offset: before.Offset}:
			case <-ctx.Done():
			case <-r.closed:
			}
			return
		}
		// A cancellation that came while the line was being read wins: the line is
		// given back, not raced against a receiver that is still ranging.
		if ctx.Err() != nil {
			r.giveBack(line, before, beforeStart)
			return
		}
		select {
		case ch <- line:
		case <-ctx.Done():
			r.giveBack(line, before, beforeStart)
			return
		case <-r.closed:
			return
		}
	}
}

func (r *Reader) setErr(err error) {
	r.errMu.Lock()
	r.err = err
	r.errMu.Unlock()
}

// Err returns the error that ended the last Lines, or nil if it ended because its
// context was done or the reader was closed (or has not ended).
func (r *Reader) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

// Lag is how far a Reader is behind the committed end (Reader.Lag).
type Lag struct {
	// Bytes is the committed bytes after the reader's position: the rest of its
	// generation, every later kept generation, the current one's committed part.
	// 0: caught up.
	Bytes uint64
	// LaterGenerations is how many generations exist after the one the reader is in
	// (0: it reads the current one).
	LaterGenerations uint64
}

// Lag reports how far the reader is behind the committed end, as of a fresh read of
// the target's manifest: cheap (two 4 KiB reads of the lock file, nothing of the
// target; lines are not counted, that would need a scan). Lag().Bytes == 0 means
// caught up. It does not move the reader. While Lines runs, the reader may be one
// line ahead of what the channel delivered.
func (r *Reader) Lag() (Lag, error) {
	const op = "lag"
	h, err := r.h.exclusive(op)
	if err != nil {
		return Lag{}, err
	}
	defer r.h.mu.Unlock()
	var out C.trib_lag
	var cerr *C.trib_error
	rc := C.trib_reader_lag(h, &out, &cerr)
	runtime.KeepAlive(r)
	if err := callError(op, rc, cerr); err != nil {
		return Lag{}, err
	}
	lag := Lag{Bytes: uint64(out.bytes), LaterGenerations: uint64(out.later_generations)}
	if p := r.pending; p != nil { // a line read ahead and given back is still to be read
		lag.Bytes += uint64(len(p.Bytes)) + 1
	}
	return lag, nil
}

// Close releases the reader; a running Lines stops and closes its channel. Later
// calls fail with ErrClosed. Closing twice is harmless: Close always returns nil.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	if r.h.freeLocked() {
		r.pending = nil
		runtime.SetFinalizer(r, nil)
	}
	return nil
}
