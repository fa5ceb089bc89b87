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
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// pollSlice is the longest single wait inside the library while a Reader waits for
// new committed lines: the library cannot be interrupted, so a cancelled context is
// noticed within this long.
const pollSlice = 100 * time.Millisecond

// A Reader reads a target's committed lines from a byte offset (fan-out). It never
// shows a byte beyond the manifest's committed length, so never a torn or
// uncommitted tail; a target that was never drained has no lines yet. Many Readers,
// in any process on any host, may read the same target; each gets every line.
//
// A Reader is one cursor. Its methods may be called from any goroutine (they are
// serialized), but a Reader is meant for one consumer: give each consumer its own.
type Reader struct {
	mu     sync.Mutex // serializes calls into the library (a trib_reader is single-threaded)
	h      *C.trib_reader
	target string
	offset atomic.Int64 // cursor: the offset just after the last line returned

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
	// Offset is the byte offset just after this line: open a Reader there to
	// continue after it (a cursor to keep).
	Offset int64
	// Err is set on the last value the channel delivers when following failed
	// (Bytes is then nil); Reader.Err returns it too.
	Err error
}

// OpenReader opens a reader of target at byte offset (0, or an Offset obtained from
// a Reader or a Line: the start of a committed line). An offset beyond the committed
// length or not at the start of a line is ErrInvalidArgument.
func OpenReader(target string, offset int64) (*Reader, error) {
	const op = "open reader"
	h, err := openReader(op, target, offset)
	if err != nil {
		return nil, err
	}
	r := &Reader{h: h, target: target, closed: make(chan struct{})}
	r.offset.Store(offset)
	runtime.SetFinalizer(r, (*Reader).finalize)
	return r, nil
}

func openReader(op, target string, offset int64) (*C.trib_reader, error) {
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
	return h, nil
}

func (r *Reader) finalize() {
	if r.h != nil {
		C.trib_reader_close(r.h)
		r.h = nil
	}
}

// Target is the target's path.
func (r *Reader) Target() string { return r.target }

// Offset is the reader's cursor: the byte offset just after the last line it
// returned, where a new Reader would continue. While Lines runs, the reader may be
// one line ahead of what the channel has delivered: keep Line.Offset instead. After
// the Lines channel is closed, Offset is again just after the last line delivered.
func (r *Reader) Offset() int64 { return r.offset.Load() }

// next asks the library for the next committed line, waiting up to wait.
func (r *Reader) next(op string, wait time.Duration) (line []byte, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h == nil {
		return nil, false, closedError(op, "reader")
	}
	var has C.bool
	var p *C.uint8_t
	var n C.size_t
	var cerr *C.trib_error
	rc := C.trib_reader_next(r.h, C.uint64_t(wait/time.Millisecond), &has, &p, &n, &cerr)
	runtime.KeepAlive(r)
	if err := callError(op, rc, cerr); err != nil {
		return nil, false, err
	}
	if !has {
		return nil, false, nil
	}
	// The library's buffer is valid until the next call on this reader: copy.
	line = make([]byte, int(n))
	copy(line, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	r.offset.Add(int64(n) + 1)
	return line, true, nil
}

func (r *Reader) busy(op string) error {
	if r.following.Load() {
		return argError(op, "the reader is being followed by Lines; use the channel, or another Reader")
	}
	return nil
}

// TryNext returns the next committed line without waiting: ok is false at the
// committed end.
func (r *Reader) TryNext() (line []byte, ok bool, err error) {
	if err := r.busy("next"); err != nil {
		return nil, false, err
	}
	return r.next("next", 0)
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
	return r.nextCtx(ctx)
}

func (r *Reader) nextCtx(ctx context.Context) ([]byte, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
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
			return nil, context.DeadlineExceeded
		}
	}
}

// Lines follows the target: it delivers every committed line from the reader's
// cursor on, then waits for drains to commit more, until ctx is done or the reader
// is closed; then the channel is closed. If reading fails (the target was truncated
// behind tributary's back, its manifest is corrupt, ...), the last value carries the
// error in Line.Err and the channel is closed; Err returns that error too.
//
// While Lines runs, the reader belongs to it: Next and TryNext fail, and a second
// Lines delivers a single error. When the channel is closed, Offset is just after
// the last line delivered (a line read but not delivered because ctx ended is given
// back), so the reader can be followed again or its Offset kept.
func (r *Reader) Lines(ctx context.Context) <-chan Line {
	ch := make(chan Line)
	if !r.following.CompareAndSwap(false, true) {
		err := argError("lines", "the reader is already being followed by Lines")
		go func() { ch <- Line{Err: err, Offset: r.Offset()}; close(ch) }()
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
		before := r.Offset()
		line, err := r.nextCtx(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return // stopped, not failed
			}
			r.setErr(err)
			select {
			case ch <- Line{Err: err, Offset: before}:
			case <-ctx.Done():
			case <-r.closed:
			}
			return
		}
		select {
		case ch <- Line{Bytes: line, Offset: r.Offset()}:
		case <-ctx.Done():
			r.rewind(before)
			return
		case <-r.closed:
			return
		}
	}
}

// rewind reopens the reader at offset, giving back a line that was read but not
// delivered. If that fails the reader keeps its position and the error is kept for
// Err.
func (r *Reader) rewind(offset int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h == nil {
		return
	}
	h, err := openReader("lines", r.target, offset)
	if err != nil {
		r.setErr(err)
		return
	}
	C.trib_reader_close(r.h)
	r.h = h
	r.offset.Store(offset)
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
		runtime.SetFinalizer(r, nil)
	}
	return nil
}
