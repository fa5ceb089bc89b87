package tributary

/*
#include "tributary.h"
*/
import "C"

import (
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
type gathered struct {
	mu    sync.Mutex
	buf   []byte
	lines int
	since time.Time     // when the first line in buf was gathered
	delay time.Duration // the longest a line stays here: Window / 4
	// err is the first error of a hand-over the timer made (no caller to tell): the
	// next Flush or Close returns it.
	err    error
	closed bool
	// refused counts gathered lines a hand-over could not queue (its error).
	refused atomic.Uint64
}

// gather adds valid lines (checked by the caller) and hands them over when enough are
// there. An error only when the Appender is closed: a hand-over's own error is kept
// for the next Flush and its lines counted in refused.
func (a *Appender) gather(lines [][]byte) error {
	g := &a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return closedError("push", "appender")
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
		a.keep(a.handOverLocked())
	}
	return nil
}

func (a *Appender) handOverByTimer() {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	a.keep(a.handOverLocked())
}

// keep records a hand-over's error for the next Flush (the first one, until then).
func (a *Appender) keep(err error) {
	if err != nil && a.g.err == nil {
		a.g.err = err
	}
}

// handOverLocked pushes the gathered lines in one call (with g.mu held). Lines it
// could not queue are counted in refused; dropped ones (DropWhenFull) in the
// Appender's Dropped.
func (a *Appender) handOverLocked() error {
	g := &a.g
	if g.lines == 0 {
		return nil
	}
	const op = "push"
	n := g.lines
	var queued, dropped C.size_t
	h, err := a.h.shared(op)
	if err == nil {
		p, l := bytesArg(g.buf)
		held := time.Since(g.since) / time.Microsecond
		var cerr *C.trib_error
		err = callError(op, C.trib_appender_push_lines(h, p, l, C.uint64_t(held), &queued, &dropped, &cerr), cerr)
		a.release()
	}
	if lost := n - int(queued) - int(dropped); lost > 0 {
		g.refused.Add(uint64(lost))
	}
	g.lines = 0
	if cap(g.buf) > 4*gatherBytes { // one huge record: do not keep its buffer
		g.buf = nil
	} else {
		g.buf = g.buf[:0]
	}
	return err
}

// handOver pushes what is gathered (Push, Stats) and returns a hand-over's error
// kept for the caller (Flush, Close) when take is set.
func (a *Appender) handOver(take bool) error {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	a.keep(a.handOverLocked())
	if !take {
		return nil
	}
	err := a.g.err
	a.g.err = nil
	return err
}

// closeGather hands over what is gathered and refuses later lines (a pending timer
// finds nothing to hand over).
func (a *Appender) closeGather() error {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	a.keep(a.handOverLocked())
	a.g.closed = true
	err := a.g.err
	a.g.err = nil
	runtime.KeepAlive(a)
	return err
}
