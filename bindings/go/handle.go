package tributary

import "sync"

// owned is one handle of the library (a *C.trib_journal, a *C.trib_reader) and its
// life cycle, the same for every type that holds one: the handle is freed exactly once,
// by Close or, as a backstop, by the owner's finalizer; it is never freed while a call
// uses it (every call holds mu, Close takes it exclusively and so waits for calls in
// progress); and every call after Close gets ErrClosed, naming what was closed.
//
// The owner keeps an owned by value, sets a finalizer that calls finalize, and keeps
// itself alive (runtime.KeepAlive) until its calls with the handle have returned.
//
// P is the handle's pointer type (*C.trib_journal): cgo's opaque struct types cannot
// be type arguments themselves; a nil P is "closed".
type owned[P comparable] struct {
	mu   sync.RWMutex
	p    P
	free func(P) // trib_journal_close, trib_reader_close
	what string  // "journal", "reader": ErrClosed's message says "the <what> is closed"
}

// shared returns the open handle with mu held for reading, for calls that may run at
// once on one handle (a trib_journal). The caller unlocks with mu.RUnlock.
func (o *owned[P]) shared(op string) (P, error) {
	o.mu.RLock()
	if o.isClosed() {
		o.mu.RUnlock()
		var none P
		return none, closedError(op, o.what)
	}
	return o.p, nil
}

// exclusive returns the open handle with mu held for writing, for a handle that takes
// one call at a time (a trib_reader is single-threaded). The caller unlocks with
// mu.Unlock.
func (o *owned[P]) exclusive(op string) (P, error) {
	o.mu.Lock()
	if o.isClosed() {
		o.mu.Unlock()
		var none P
		return none, closedError(op, o.what)
	}
	return o.p, nil
}

// freeLocked frees the handle if it is still open, with mu held for writing, and
// reports whether it did.
func (o *owned[P]) freeLocked() bool {
	if o.isClosed() {
		return false
	}
	o.free(o.p)
	var none P
	o.p = none
	return true
}

// isClosed reports whether the handle was freed (with mu held).
func (o *owned[P]) isClosed() bool {
	var none P
	return o.p == none
}

// close frees the handle if it is still open, after the calls in progress, and
// reports whether it did (the owner then removes its finalizer).
func (o *owned[P]) close() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.freeLocked()
}

// finalize is close for the owner's finalizer: nothing else can reach the owner
// then, so no call is in progress.
func (o *owned[P]) finalize() {
	o.freeLocked()
}
