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

// A Cursor is a reading position in a target: a generation of the target and the
// byte offset of a line's start in it. It stays valid across managed rotations
// (DrainOptions.RotateBytes, RotateLines): a rotated generation lives on as
// "<target>.<generation>" and a Reader opened at a Cursor in it reads it to the end
// and goes on into the next generation. Keep the Cursor of the last line you
// processed (Line.Cursor, or Reader.Cursor) and reopen with OpenReaderAt to continue
// after it, without losing or repeating a line.
//
// The zero value, CursorStart, is the very beginning: the start of the oldest
// generation still kept. A Cursor is a plain value: compare it with ==, store its two
// fields, or its String form and ParseCursor.
type Cursor struct {
	// Generation is the target's generation: 1 until the first managed rotation,
	// then one more per rotation. 0 only in CursorStart.
	Generation uint64
	// Offset is the byte offset in that generation of the start of the next line.
	Offset int64
}

// CursorStart is the zero Cursor: the start of the oldest generation still kept
// (retention may have removed older ones).
var CursorStart = Cursor{}

// String formats c as "generation:offset", the form ParseCursor reads (and the one
// the Rust crate and the CLI print).
func (c Cursor) String() string {
	return strconv.FormatUint(c.Generation, 10) + ":" + strconv.FormatInt(c.Offset, 10)
}

// ParseCursor reads a Cursor in the "generation:offset" form of Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	const op = "parse cursor"
	g, o, ok := strings.Cut(s, ":")
	if !ok {
		return Cursor{}, argError(op, fmt.Sprintf("cursor %q is not of the form generation:offset", s))
	}
	gen, err1 := strconv.ParseUint(g, 10, 64)
	off, err2 := strconv.ParseInt(o, 10, 64)
	if err1 != nil || err2 != nil || off < 0 {
		return Cursor{}, argError(op, fmt.Sprintf("cursor %q is not of the form generation:offset "+
			"(two non-negative integers)", s))
	}
	return Cursor{Generation: gen, Offset: off}, nil
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
	mu     sync.Mutex // serializes calls into the library (a trib_reader is single-threaded)
	h      *C.trib_reader
	target string
	// pending is a line read from the library but given back (Lines stopped before
	// delivering it): the next read returns it. Guarded by mu.
	pending *Line

	curMu  sync.Mutex
	cursor Cursor // just after the last line returned (or read ahead by Lines)

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
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var h *C.trib_reader
	var cerr *C.trib_error
	rc := C.trib_reader_open_at(ctarget, C.uint64_t(c.Generation), C.uint64_t(c.Offset), &h, &cerr)
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
	r := &Reader{h: h, target: target, closed: make(chan struct{}), cursor: c}
	runtime.SetFinalizer(r, (*Reader).finalize)
	return r, nil
}

// libCursor is the library reader's position: where its next line starts.
func libCursor(op string, h *C.trib_reader) (Cursor, error) {
	var gen, off C.uint64_t
	var cerr *C.trib_error
	if err := callError(op, C.trib_reader_cursor(h, &gen, &off, &cerr), cerr); err != nil {
		return Cursor{}, err
	}
	return Cursor{Generation: uint64(gen), Offset: int64(off)}, nil
}

func (r *Reader) finalize() {
	if r.h != nil {
		C.trib_reader_close(r.h)
		r.h = nil
	}
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

func (r *Reader) setCursor(c Cursor) {
	r.curMu.Lock()
	r.cursor = c
	r.curMu.Unlock()
}

// next returns the next committed line, waiting up to wait inside the library.
func (r *Reader) next(op string, wait time.Duration) (Line, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h == nil {
		return Line{}, false, closedError(op, "reader")
	}
	if p := r.pending; p != nil {
		r.pending = nil
		r.setCursor(p.Cursor)
		return *p, true, nil
	}
	var has C.bool
	var p *C.uint8_t
	var n C.size_t
	var cerr *C.trib_error
	rc := C.trib_reader_next(r.h, C.uint64_t(wait/time.Millisecond), &has, &p, &n, &cerr)
	if err := callError(op, rc, cerr); err != nil {
		return Line{}, false, err
	}
	if !has {
		return Line{}, false, nil
	}
	// The library's buffer is valid until the next call on this reader: copy.
	line := make([]byte, int(n))
	copy(line, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	// The position after the line: the library may have moved on to the next
	// generation to read it.
	c, err := libCursor(op, r.h)
	runtime.KeepAlive(r)
	if err != nil {
		return Line{}, false, err
	}
	r.setCursor(c)
	return Line{Bytes: line, Cursor: c, Offset: c.Offset}, true, nil
}

// giveBack makes a line read but not delivered the next one to be read again, and
// moves the cursor back to before it.
func (r *Reader) giveBack(l Line, before Cursor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h == nil {
		return
	}
	r.pending = &l
	r.setCursor(before)
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
// of every generation is delivered once, in order, and each Line carries the Cursor
// after it. If reading fails (the target was truncated behind tributary's back, its
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
		before := r.Cursor()
		line, err := r.nextCtx(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
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
		select {
		case ch <- line:
		case <-ctx.Done():
			r.giveBack(line, before)
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

// Close releases the reader; a running Lines stops and closes its channel. Later
// calls fail with ErrClosed. Closing twice is harmless: Close always returns nil.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h != nil {
		C.trib_reader_close(r.h)
		r.h = nil
		r.pending = nil
		runtime.SetFinalizer(r, nil)
	}
	return nil
}
