package tributary

/*
#include "tributary.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// gatherBytes is how many bytes of records a SlogHandler or Writer over an Appender
// gathers before handing them over in one call (trib_appender_push_lines): ~200
// records of ~150 bytes, one cgo call and one lock of the queue for all of them.
const gatherBytes = 32 << 10

// gathered is what a SlogHandler or a Writer over an Appender has written and not yet
// handed over: whole lines, each ended by '\n', handed over in one call when
// gatherBytes are there or a quarter of the window after the first (the timer), and
// before a Push, a Flush or Close reaches the Appender, so push order and Flush's
// promise include them. docs/design.md, "Background commit" (7).
//
// Keeps: a gathered line leaves only by being queued (or dropped by DropWhenFull,
// counted there), or, after an error retrying cannot fix, by being counted in
// refused. A hand-over that fails otherwise (a commit failure met while waiting for
// room) keeps the lines it did not queue, in order, for the next hand-over: Flush
// returns that failure and succeeds only once they are handed over and durable.
type gathered struct {
	// handing is held through a hand-over (the C call included): one at a time, so
	// lines reach the library in order. Gathering takes only mu, never waits for it.
	handing sync.Mutex
	mu      sync.Mutex
	buf     []byte
	lines   int
	since   time.Time     // when the oldest line in buf was gathered
	delay   time.Duration // the longest a line stays here while hand-overs succeed: Window / 4
	// failed is the last hand-over's error while its lines are still here.
	failed error
	// final is an error retrying cannot fix (the Appender closed, its journal gone for
	// good): the lines then here were counted in refused; every later call returns it.
	final error
	// most is the most bytes gathered before a writer waits for a hand-over
	// (back-pressure), or, while hand-overs fail, before a new line is refused at
	// once with the failure (its caller is told).
	most int
	// refused counts gathered lines dropped after an error retrying cannot fix.
	refused atomic.Uint64
}

// gather adds valid lines (checked by the caller) and hands them over when enough are
// there. Its error means the lines were NOT gathered: the Appender is closed or broken
// for good, or hand-overs keep failing and most bytes are already kept. It never
// waits for a disk, except as back-pressure when most bytes are gathered and
// hand-overs are not failing.
func (a *Appender) gather(lines [][]byte) error {
	g := &a.g
	g.mu.Lock()
	if g.final != nil {
		g.mu.Unlock()
		return g.final
	}
	if g.failed != nil && len(g.buf) >= g.most {
		err := g.failed
		g.mu.Unlock()
		return err
	}
	if g.lines == 0 {
		g.since = time.Now()
		// A timer of its own each time, not one kept in a: a → timer → a would be a
		// cycle, and Go does not promise to finalize an object in a cycle. While it is
		// pending it keeps a alive, so gathered lines are never left to a finalizer.
		time.AfterFunc(g.delay, a.handOverByTimer)
	}
	for _, l := range lines {
		g.buf = append(g.buf, l...)
		g.buf = append(g.buf, '\n')
		g.lines++
	}
	full := len(g.buf) >= g.most && g.failed == nil
	enough := len(g.buf) >= gatherBytes && g.failed == nil
	g.mu.Unlock()
	// (a failure keeps the lines, this caller's with them: it is not told, or it might
	// write them again; Flush reports it, the timer retries)
	switch {
	case full: // back-pressure: wait for the hand-over in flight, then make one
		_ = a.handOver()
	case enough && g.handing.TryLock(): // else one is in flight and takes these next
		_ = a.handOverHanding()
		g.handing.Unlock()
	}
	return nil
}

func (a *Appender) handOverByTimer() {
	g := &a.g
	if !g.handing.TryLock() {
		return // one in flight: its failure arms a retry, new lines arm their own timer
	}
	_ = a.handOverHanding()
	g.handing.Unlock()
}

// handOver makes a hand-over, after the one in flight (Push, Flush).
func (a *Appender) handOver() error {
	a.g.handing.Lock()
	defer a.g.handing.Unlock()
	return a.handOverHanding()
}

// handOverHanding pushes the gathered lines in one call, with g.handing held and g.mu
// not held during the call (gathering goes on). On an error the lines it did not queue
// go back before those gathered meanwhile, unless retrying cannot fix it (then every
// line here is counted in refused and the error is final).
func (a *Appender) handOverHanding() error {
	g := &a.g
	g.mu.Lock()
	if g.final != nil {
		g.mu.Unlock()
		return g.final
	}
	if g.lines == 0 {
		g.failed = nil
		g.mu.Unlock()
		return nil
	}
	buf, n, since := g.buf, g.lines, g.since
	g.buf, g.lines = nil, 0
	g.mu.Unlock()

	const op = "push"
	var queued, dropped C.size_t
	h, err := a.h.shared(op)
	if err == nil {
		p, l := bytesArg(buf)
		held := time.Since(since) / time.Microsecond
		var cerr *C.trib_error
		err = callError(op, C.trib_appender_push_lines(h, p, l, C.uint64_t(held), &queued, &dropped, &cerr), cerr)
		a.release()
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.failed = nil
		if len(g.buf) == 0 && cap(buf) <= 4*gatherBytes {
			g.buf = buf[:0] // (reuse it unless one huge record grew it)
		}
		if g.lines > 0 {
			// lines gathered while this one was in the library: their timer may have
			// come and found it in flight
			time.AfterFunc(g.delay, a.handOverByTimer)
		}
		return nil
	}
	done := int(queued) + int(dropped)
	cut := 0
	for range done {
		cut += bytes.IndexByte(buf[cut:], '\n') + 1
	}
	left := n - done
	if retryingCannotFix(err) {
		g.refused.Add(uint64(left + g.lines))
		g.buf, g.lines = nil, 0
		g.final = err
		return err
	}
	// back before what was gathered meanwhile, the oldest first
	g.buf = append(buf[cut:len(buf):len(buf)], g.buf...)
	if left > 0 {
		g.since = since
	}
	g.lines += left
	g.failed = err
	// retried by a timer whoever failed (a writer or Flush: nobody else tries while
	// hand-overs fail)
	time.AfterFunc(g.delay, a.handOverByTimer)
	return err
}

// retryingCannotFix: errors after which no hand-over to this Appender can succeed
// (as the library's committer treats them: they are sticky there).
func retryingCannotFix(err error) bool {
	var e *Error
	if errors.Is(err, ErrClosed) || !errors.As(err, &e) {
		return true
	}
	switch e.Kind {
	case KindJournalGone, KindInvalidArgument, KindInvalidLine, KindCorruptJournalRow, KindPanic:
		return true
	}
	return false
}

// closeGather hands over what is gathered and refuses later lines (a pending timer
// finds nothing to hand over). Lines a failed hand-over leaves are counted in refused
// and named in the error.
func (a *Appender) closeGather() error {
	g := &a.g
	g.handing.Lock()
	defer g.handing.Unlock()
	// until nothing is left: lines gathered while a hand-over was in the library
	// (racing writers) go too, and the emptiness seen and the refusal of later lines
	// are one step under mu
	var err error
	for {
		err = a.handOverHanding()
		g.mu.Lock()
		if err != nil || g.lines == 0 {
			break
		}
		g.mu.Unlock()
	}
	defer g.mu.Unlock()
	if err != nil && g.lines > 0 {
		kind, message := KindIO, err.Error()
		var e *Error
		if errors.As(err, &e) {
			kind, message = e.Kind, e.Message
		}
		err = &Error{
			Op:               "close appender",
			Kind:             kind,
			Message:          fmt.Sprintf("%s (%d gathered line(s) were not stored: the appender closed)", message, g.lines),
			LineIndex:        -1,
			RecordsNotStored: uint64(g.lines),
			also:             []error{err},
		}
		// (counted in the error only: also in Refused, an outside tester added them
		// up twice)
		g.buf, g.lines = nil, 0
	}
	if g.final == nil {
		g.final = closedError("push", "appender")
	}
	if errors.Is(err, ErrClosed) {
		return nil // closed before: Close again is nil
	}
	return err
}
