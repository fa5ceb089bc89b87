package tributary

/*
#include "tributary.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
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
// before anything else reaches the Appender (Push, Flush, Stats, Close), so push
// order and Flush's promise include them. docs/design.md, "Background commit" (7).
//
// Keeps: a gathered line leaves only by being queued (or dropped by DropWhenFull,
// counted there), or, after an error retrying cannot fix, by being counted in
// refused. A hand-over that fails otherwise (a commit failure met while waiting for
// room) keeps the lines it did not queue, in order, for the next hand-over: Flush
// returns that failure and succeeds only once they are handed over and durable.
type gathered struct {
	mu    sync.Mutex
	buf   []byte
	lines int
	since time.Time     // when the oldest line in buf was gathered
	delay time.Duration // the longest a line stays here while hand-overs succeed: Window / 4
	// failed is the last hand-over's error while its lines are still here.
	failed error
	// final is an error retrying cannot fix (the Appender closed, its journal gone for
	// good): the lines then here were counted in refused; every later call returns it.
	final error
	// most is the most bytes kept while hand-overs fail: past it a new line is refused
	// at once with the failure (its caller is told; nothing grows without bound).
	most int
	// refused counts gathered lines dropped after an error retrying cannot fix.
	refused atomic.Uint64
}

// gather adds valid lines (checked by the caller) and hands them over when enough are
// there. Its error means the lines were NOT gathered: the Appender is closed or broken
// for good, or hand-overs keep failing and most bytes are already kept.
func (a *Appender) gather(lines [][]byte) error {
	g := &a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.final != nil {
		return g.final
	}
	if g.failed != nil && len(g.buf) >= g.most {
		if err := a.handOverLocked(); err != nil {
			return err
		}
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
	if len(g.buf) >= gatherBytes {
		// (a failure keeps the lines, this caller's with them: it is not told, or it
		// might write them again; Flush reports it)
		_ = a.handOverLocked()
	}
	return nil
}

func (a *Appender) handOverByTimer() {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	if a.handOverLocked() != nil && a.g.final == nil && a.g.lines > 0 {
		// kept for a retry: try again after another delay, or at the next call
		time.AfterFunc(a.g.delay, a.handOverByTimer)
	}
}

// handOverLocked pushes the gathered lines in one call (with g.mu held). On an error
// the lines it did not queue stay, in order, unless retrying cannot fix it (then they
// are counted in refused and the error is final).
func (a *Appender) handOverLocked() error {
	g := &a.g
	if g.final != nil {
		return g.final
	}
	if g.lines == 0 {
		g.failed = nil
		return nil
	}
	const op = "push"
	var queued, dropped C.size_t
	h, err := a.h.shared(op)
	if err == nil {
		p, l := bytesArg(g.buf)
		held := time.Since(g.since) / time.Microsecond
		var cerr *C.trib_error
		err = callError(op, C.trib_appender_push_lines(h, p, l, C.uint64_t(held), &queued, &dropped, &cerr), cerr)
		a.release()
	}
	if err == nil {
		g.reset()
		return nil
	}
	if done := int(queued) + int(dropped); done > 0 {
		cut := 0
		for range done {
			cut += bytes.IndexByte(g.buf[cut:], '\n') + 1
		}
		g.buf = g.buf[:copy(g.buf, g.buf[cut:])]
		g.lines -= done
	}
	if retryingCannotFix(err) {
		g.refused.Add(uint64(g.lines))
		g.reset()
		g.final = err
		return err
	}
	g.failed = err
	return err
}

// reset empties the gathered lines (their buffer kept unless one huge record grew it).
func (g *gathered) reset() {
	g.lines = 0
	g.failed = nil
	if cap(g.buf) > 4*gatherBytes {
		g.buf = nil
	} else {
		g.buf = g.buf[:0]
	}
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

// handOver pushes what is gathered (Push, Flush, Stats): nil once nothing is left.
func (a *Appender) handOver() error {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	return a.handOverLocked()
}

// closeGather hands over what is gathered and refuses later lines (a pending timer
// finds nothing to hand over). Lines a failed hand-over leaves are counted in refused
// and named in the error.
func (a *Appender) closeGather() error {
	g := &a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	err := a.handOverLocked()
	if err != nil && g.lines > 0 {
		err = fmt.Errorf("%w (%d gathered line(s) were not stored: the appender closed)", err, g.lines)
		g.refused.Add(uint64(g.lines))
		g.reset()
	}
	if g.final == nil {
		g.final = closedError("push", "appender")
	}
	runtime.KeepAlive(a)
	if errors.Is(err, ErrClosed) {
		return nil // closed before: Close again is nil
	}
	return err
}
