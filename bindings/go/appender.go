package tributary

/*
#include <stdlib.h>
#include "tributary.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// AppenderOptions configure OpenAppender. The zero value (or a nil pointer) means the
// defaults; a zero field keeps its default.
type AppenderOptions struct {
	// JournalOptions: how the journal is opened (durability, line limit, ...).
	JournalOptions
	// Window is the durability window (default 10 ms): the longest a pushed line
	// waits to be durable, unless one commit alone takes longer (a slow disk). Push
	// waits (or drops, with DropWhenFull) while a line not yet durable has waited
	// longer. A crash loses at most the lines of the last window. Rounded down to
	// whole microseconds; at least 1 µs. Zero (the zero value) means the default:
	// 1 µs is the nearest to no linger (commit at once, a Push waiting while an
	// earlier line is not durable yet).
	Window time.Duration
	// MaxQueueBytes is the most bytes queued and not yet committed (default 8 MiB).
	MaxQueueBytes int
	// DropWhenFull makes Push drop a line (and count it, Stats().Dropped) when the
	// queue is full, instead of waiting for room (the default). The queue is full when
	// it holds MaxQueueBytes, or when a line not yet durable has waited longer than
	// Window (the committer is behind), however little it holds.
	DropWhenFull bool
}

func (o *AppenderOptions) toC(op string) (C.trib_appender_options, error) {
	var c C.trib_appender_options
	var cerr *C.trib_error
	if err := callError(op, C.trib_appender_options_default(&c, &cerr), cerr); err != nil {
		return c, err
	}
	if o == nil {
		return c, nil
	}
	var err error
	if c.journal, err = o.JournalOptions.toC(op); err != nil {
		return c, err
	}
	switch {
	case o.Window < 0:
		return c, argError(op, fmt.Sprintf("Window is negative (%v)", o.Window))
	case o.Window > 0 && o.Window < time.Microsecond:
		return c, argError(op, fmt.Sprintf("Window is %v; give at least 1µs", o.Window))
	case o.Window > 0:
		c.window_us = C.uint64_t(o.Window / time.Microsecond)
	}
	if o.MaxQueueBytes < 0 {
		return c, argError(op, fmt.Sprintf("MaxQueueBytes is negative (%d)", o.MaxQueueBytes))
	}
	if o.MaxQueueBytes > 0 {
		c.max_queue_bytes = C.uint64_t(o.MaxQueueBytes)
	}
	if o.DropWhenFull {
		c.on_full = C.TRIB_ON_FULL_DROP
	}
	return c, nil
}

// An Appender is a journal with a background committer (background commit), for
// logging paths that cannot wait for an fsync per line: Push queues a line and
// returns before it is durable; a committer thread appends what is queued as one
// transaction (one fsync), each line within the durability Window of its Push; Flush
// waits until every line pushed before it is durable. Lines are committed in Push
// order. What a crash can lose: the lines of the last Window, never a line pushed
// before a Flush that returned nil. See docs/design.md, "Background commit".
//
// An Appender is safe for concurrent use. Use it as an io.Writer with NewWriter, or
// with log/slog through NewSlogHandler.
type Appender struct {
	h       owned[*C.trib_appender]
	path    string
	maxLine int
	// g: what a SlogHandler or Writer wrote and is not yet handed over (gather.go)
	g gathered
}

// OpenAppender opens (or creates) the journal at path and starts its committer. opts
// may be nil for the defaults. Close it when done: Close flushes first.
func OpenAppender(path string, opts *AppenderOptions) (*Appender, error) {
	const op = "open appender"
	copts, err := opts.toC(op)
	if err != nil {
		return nil, err
	}
	cpath, err := cString(op, "path", path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	var h *C.trib_appender
	var cerr *C.trib_error
	if err := callError(op, C.trib_appender_open(cpath, &copts, &h, &cerr), cerr); err != nil {
		return nil, err
	}
	a := &Appender{path: path, maxLine: int(copts.journal.max_line_bytes)}
	a.g.delay = time.Duration(copts.window_us) * time.Microsecond / 4
	a.g.most = max(int(copts.max_queue_bytes), gatherBytes)
	a.h = owned[*C.trib_appender]{
		p:    h,
		free: func(h *C.trib_appender) { C.trib_appender_close(h, nil) },
		what: "appender",
	}
	// A backstop only: an Appender garbage-collected unclosed is flushed and closed here.
	runtime.SetFinalizer(a, func(a *Appender) { a.h.finalize() })
	return a, nil
}

// Path is the journal's path, as given to OpenAppender.
func (a *Appender) Path() string { return a.path }

// MaxLineBytes is the longest line the journal accepts.
func (a *Appender) MaxLineBytes() int { return a.maxLine }

func (a *Appender) String() string { return "tributary.Appender(" + a.path + ")" }

func (a *Appender) release() {
	a.h.mu.RUnlock()
	runtime.KeepAlive(a)
}

// Push queues one line (without '\n') for the next commit and returns: queued is
// false when the queue was full and DropWhenFull dropped it (full: MaxQueueBytes
// queued, or a line not yet durable older than Window). The line is not durable
// until Flush returns (or the committer's next commit). A line with '\n' or longer
// than MaxLineBytes is refused at once with ErrInvalidLine. A Push waiting for room
// returns the error of a commit attempt that failed meanwhile (e.g. a full disk), the
// line not queued; while commits fail, a Push that would wait returns their error at
// once.
func (a *Appender) Push(line []byte) (queued bool, err error) {
	const op = "push"
	// after what a SlogHandler or Writer gathered before it (push order): if those
	// cannot be handed over now, neither can this line (its error, the line not queued)
	a.g.handing.Lock()
	defer a.g.handing.Unlock()
	if err := a.handOverHanding(); err != nil {
		return false, err
	}
	h, err := a.h.shared(op)
	if err != nil {
		return false, err
	}
	defer a.release()
	p, n := bytesArg(line)
	var q C.int
	var cerr *C.trib_error
	if err := callError(op, C.trib_appender_push(h, p, n, &q, &cerr), cerr); err != nil {
		return false, err
	}
	return q != 0, nil
}

// PushString is Push for a string, without copying it.
func (a *Appender) PushString(line string) (bool, error) {
	return a.Push(unsafe.Slice(unsafe.StringData(line), len(line)))
}

// Flush waits until every line pushed before it is durable. An error means a commit
// attempt failed while it waited (the lines stay queued and are retried: Flush
// again), or one that retrying cannot fix (the journal removed).
func (a *Appender) Flush() error {
	const op = "flush"
	// what a SlogHandler or Writer gathered first: a failure keeps those lines, to be
	// handed over by the next Flush (or the timer)
	if err := a.handOver(); err != nil {
		return err
	}
	h, err := a.h.shared(op)
	if err != nil {
		return err
	}
	defer a.release()
	var cerr *C.trib_error
	return callError(op, C.trib_appender_flush(h, &cerr), cerr)
}

// AppenderStats are an Appender's counters since it was opened.
type AppenderStats struct {
	// Pushed lines (the nth pushed line is durable once Committed reaches n).
	Pushed uint64
	// Committed (durable) lines.
	Committed uint64
	// Dropped lines (DropWhenFull).
	Dropped uint64
	// Commits is the number of transactions (lines per transaction: Committed/Commits).
	Commits uint64
	// FailedCommits counts commit attempts that failed (each retried).
	FailedCommits uint64
	// Refused counts lines a SlogHandler or Writer gave this Appender that were
	// dropped when handing them over met an error retrying cannot fix (the Appender
	// closed, its journal gone for good): not stored. Every later call returns that
	// error. (They gather lines and hand them over in groups: Pushed counts lines
	// handed over; Flush hands over what is gathered. Any other failure of a
	// hand-over keeps the lines for the next one, and Flush returns it.) Lines that
	// Close gives up on are not here: RecordsNotStored(the error Close returned)
	// counts them, each lost line in one of the two.
	Refused uint64
}

// Stats returns the counters.
func (a *Appender) Stats() (AppenderStats, error) {
	const op = "stats"
	h, err := a.h.shared(op)
	if err != nil {
		return AppenderStats{}, err
	}
	defer a.release()
	var s C.trib_appender_stats
	var cerr *C.trib_error
	if err := callError(op, C.trib_appender_read_stats(h, &s, &cerr), cerr); err != nil {
		return AppenderStats{}, err
	}
	return AppenderStats{
		Pushed:        uint64(s.pushed),
		Committed:     uint64(s.committed),
		Dropped:       uint64(s.dropped),
		Commits:       uint64(s.commits),
		FailedCommits: uint64(s.failed_commits),
		Refused:       a.g.refused.Load(),
	}, nil
}

// DurableWait is the durability window as measured: the wait (Push → durable) that a
// fraction q (0 to 1) of the lines committed so far did not exceed (q = 1: the
// longest), or 0 before the first commit. Each line counts with its own wait (its
// Push → its batch's fsync returned), rounded up to a bucket at most 6 % wide, so it
// never reads below the true wait. Above Window, commits alone take longer than the window (a slow disk).
func (a *Appender) DurableWait(q float64) (time.Duration, error) {
	const op = "durable wait"
	h, err := a.h.shared(op)
	if err != nil {
		return 0, err
	}
	defer a.release()
	var us C.uint64_t
	var cerr *C.trib_error
	if err := callError(op, C.trib_appender_durable_wait(h, C.double(q), &us, &cerr), cerr); err != nil {
		return 0, err
	}
	return time.Duration(us) * time.Microsecond, nil
}

// Close flushes, stops the committer and closes the journal, after the calls in
// progress. An error means lines still queued were not stored (it says how many).
// Closing again returns nil.
func (a *Appender) Close() error {
	const op = "close appender"
	handOverErr := a.closeGather()
	a.h.mu.Lock()
	defer a.h.mu.Unlock()
	if a.h.isClosed() {
		return nil
	}
	h := a.h.p
	a.h.p = nil
	runtime.SetFinalizer(a, nil)
	var cerr *C.trib_error
	// both, when both failed: the library's count of queued lines not stored, and the
	// gathered ones (an outside tester found only the first reported)
	return errors.Join(callError(op, C.trib_appender_close(h, &cerr), cerr), handOverErr)
}

// appendLines is how a Writer or a SlogHandler hands over whole lines: checked
// first, so that a bad line queues none of them (as a Journal's batch stores none),
// then gathered and handed over in groups (gather.go). It fails only when the
// Appender is closed (nothing taken); a hand-over's error is returned by the next
// Flush, its lines counted in Stats().Refused.
func (a *Appender) appendLines(lines [][]byte) (int, error) {
	for i, l := range lines {
		if len(l) > a.maxLine || bytes.IndexByte(l, '\n') >= 0 {
			return 0, &Error{
				Op:   "push",
				Kind: KindInvalidLine,
				Message: fmt.Sprintf("invalid line (index %d): %d bytes, longer than the maximum of %d or with a "+
					"'\\n'; nothing of this write was queued", i, len(l), a.maxLine),
				LineIndex: i,
			}
		}
	}
	if err := a.gather(lines); err != nil {
		return 0, err
	}
	return len(lines), nil
}
