package tributary

/*
#include <stdint.h>
#include <stdlib.h>
#include "tributary.h"

// compactEvent is exported by compact_export.go.
extern void compactEvent(void *ctx, int event, char *subject, int kind, char *message, trib_drain_report *report);

static void trib_go_event(void *ctx, int event, const char *subject, int kind, const char *message,
                          const trib_drain_report *report) {
	compactEvent(ctx, event, (char *)subject, kind, (char *)message, (trib_drain_report *)report);
}

// The cgo.Handle travels as the callback's ctx: converted here, not in Go, where an
// integer made into a pointer would upset the checkers.
static int trib_go_compactor_run(const trib_compactor *c, const trib_run_options *options, const trib_stop *stop,
                                 uintptr_t handle, trib_run_report *report, trib_error **err) {
	return trib_compactor_run(c, options, stop, trib_go_event, (void *)handle, report, err);
}
*/
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"time"
	"unsafe"
)

// CompactOptions configure Compact.
type CompactOptions struct {
	DrainOptions
	// Interval is the pause after a pass that found nothing to move (default
	// 100 ms; rounded up to whole milliseconds). After a transient error the pause
	// doubles from it, up to 30 s.
	Interval time.Duration
	// OnDrain, if set, is called (on Compact's goroutine) after every round that
	// committed lines.
	OnDrain func(DrainReport)
	// OnEvent, if set, is called (on Compact's goroutine) for what a log should say:
	// lock contention, a problem (said once, not once per pass), a journal set
	// aside, a problem that is over. See CompactEvent.
	OnEvent func(CompactEvent)
}

// CompactEventType says what a CompactEvent is about.
type CompactEventType int

// The events of Compact (TRIB_EVENT_* of the C ABI).
const (
	// EventCommitted: a round committed lines (OnDrain gets its report).
	EventCommitted CompactEventType = C.TRIB_EVENT_COMMITTED
	// EventContended: another host holds the target's lock, or ours was lost
	// mid-round; the round is retried after the interval.
	EventContended CompactEventType = C.TRIB_EVENT_CONTENDED
	// EventProblem: transient trouble with the target or the spool (a full disk,
	// a share not mounted yet, the target missing); retried with backoff.
	EventProblem CompactEventType = C.TRIB_EVENT_PROBLEM
	// EventSetAside: a journal that cannot be drained is set aside and retried when
	// its files change (and at least every minute); the others keep draining.
	EventSetAside CompactEventType = C.TRIB_EVENT_SET_ASIDE
	// EventResolved: the problem reported before about Subject is over.
	EventResolved CompactEventType = C.TRIB_EVENT_RESOLVED
)

// CompactEvent is one thing Compact tells its OnEvent.
type CompactEvent struct {
	Type CompactEventType
	// Subject names the object: "target <path>" or "journal <path>" (empty for
	// EventCommitted and EventContended).
	Subject string
	// Kind is the error's kind for EventContended, EventProblem and EventSetAside;
	// 0 otherwise.
	Kind ErrorKind
	// Message is a human-readable sentence: the error's message, or what a round
	// committed.
	Message string
}

// compactState is what the C callback reaches through its cgo.Handle.
type compactState struct {
	onDrain  func(DrainReport)
	onEvent  func(CompactEvent)
	stop     *C.trib_stop
	panicked any // a panic of OnDrain or OnEvent, raised again once the run returned
}

// Compactor is a target, its drain options and its journal sources — spool folders
// (every *.journal directly in one, as the folder is at each pass) and journal
// paths — to run as the compactor daemon (Run) or until nothing is left to drain
// (DrainUntilEmpty), as often as needed. A spool that does not exist yet, or a
// journal that is missing or cannot be drained, never stops it: each is reported
// once (EventProblem, EventSetAside) and looked at again while the others drain.
//
// A Compactor is safe for concurrent use; sources added during a Run are picked up
// by the next one. Close it when done (defer c.Close()).
type Compactor struct {
	h      owned[*C.trib_compactor]
	target string
}

// RunOptions configure Compactor.Run.
type RunOptions struct {
	// Interval is the pause after a pass that found nothing to move (default
	// 100 ms; rounded up to whole milliseconds). After a transient error the pause
	// doubles from it, up to MaxBackoff.
	Interval time.Duration
	// MaxBackoff is the longest pause between retries after transient trouble
	// (default 30 s).
	MaxBackoff time.Duration
	// UntilEmpty makes Run return once a pass over every journal finds nothing more
	// to drain, instead of waiting for more until ctx is done.
	UntilEmpty bool
	// OnDrain, if set, is called (on Run's goroutine) after every round that
	// committed lines.
	OnDrain func(DrainReport)
	// OnEvent, if set, is called (on Run's goroutine) for what a log should say.
	// See CompactEvent.
	OnEvent func(CompactEvent)
}

// RunReport says what a Run did before it returned.
type RunReport struct {
	Rounds uint64 // rounds that committed lines
	Lines  uint64 // lines committed to the target
	// SetAside counts the journals set aside, and spool folders that could not be
	// listed, when it returned (each was reported through OnEvent): with
	// UntilEmpty, what "empty" did not include.
	SetAside int
}

// NewCompactor makes a compactor for target with opts (the options of Drain); its
// first sources are opts.Spool and opts.Journals (both may be given; add more with
// AddSpool and AddJournal). The target must exist (Init) unless opts.Create is set.
func NewCompactor(target string, opts DrainOptions) (*Compactor, error) {
	const op = "new compactor"
	copts, err := opts.toC(op)
	if err != nil {
		return nil, err
	}
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var h *C.trib_compactor
	var cerr *C.trib_error
	if err := callError(op, C.trib_compactor_new(ctarget, &copts, &h, &cerr), cerr); err != nil {
		return nil, err
	}
	c := &Compactor{target: target}
	c.h = owned[*C.trib_compactor]{p: h, free: func(h *C.trib_compactor) { C.trib_compactor_free(h) }, what: "compactor"}
	runtime.SetFinalizer(c, func(c *Compactor) { c.h.finalize() })
	if opts.Spool != "" {
		if err := c.AddSpool(opts.Spool); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, j := range opts.Journals {
		if err := c.AddJournal(j); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Target is the target's path, as given to NewCompactor.
func (c *Compactor) Target() string { return c.target }

func (c *Compactor) String() string { return "tributary.Compactor(" + c.target + ")" }

// AddSpool adds a spool folder: every *.journal directly in it is drained, as the
// folder is at each pass. Adding a folder twice adds it once.
func (c *Compactor) AddSpool(folder string) error {
	return c.add("add spool", "folder", folder, func(h *C.trib_compactor, p *C.char, e **C.trib_error) C.int {
		return C.trib_compactor_add_spool(h, p, e)
	})
}

// AddJournal adds a journal path; one that does not exist yet is set aside
// (EventSetAside, once) and drained once it exists. Adding a path twice adds it once.
func (c *Compactor) AddJournal(path string) error {
	return c.add("add journal", "path", path, func(h *C.trib_compactor, p *C.char, e **C.trib_error) C.int {
		return C.trib_compactor_add_journal(h, p, e)
	})
}

func (c *Compactor) add(op, what, path string, call func(*C.trib_compactor, *C.char, **C.trib_error) C.int) error {
	cpath, err := cString(op, what, path)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cpath))
	h, err := c.h.shared(op)
	if err != nil {
		return err
	}
	defer c.release()
	var cerr *C.trib_error
	return callError(op, call(h, cpath, &cerr), cerr)
}

func (c *Compactor) release() {
	c.h.mu.RUnlock()
	runtime.KeepAlive(c)
}

// Run is the compactor daemon over c's sources, the same loop as `tributary
// compact`: it drains them into the target, pauses for opts.Interval when there was
// nothing to move, and goes on until ctx is done (or, with opts.UntilEmpty, until a
// pass over every journal finds nothing more), then returns a nil error. A ctx that
// is done is noticed within about 10 ms while Run pauses or waits for the target's
// lock, or after the round it is in (a round is never
// interrupted).
//
// Only an error that needs a human stops it and is returned (with the report so
// far): a corrupt manifest, a truncated or torn target, unexpected bytes at its end,
// an unsafe filesystem under the target, an invalid argument. Everything else is
// retried and reported once through OnEvent (see Compact). A panic in OnDrain or
// OnEvent stops the run (after the round) and is raised again by Run.
func (c *Compactor) Run(ctx context.Context, opts RunOptions) (RunReport, error) {
	const op = "run compactor"
	if ctx.Err() != nil {
		return RunReport{}, nil
	}
	var ropts C.trib_run_options
	var cerr *C.trib_error
	if err := callError(op, C.trib_run_options_default(&ropts, &cerr), cerr); err != nil {
		return RunReport{}, err
	}
	var err error
	if opts.Interval != 0 {
		if ropts.interval_ms, err = millis(op, "Interval", opts.Interval); err != nil {
			return RunReport{}, err
		}
		if ropts.interval_ms == 0 {
			ropts.interval_ms = 1 // the shortest pause, not "no pause"
		}
	}
	if opts.MaxBackoff != 0 {
		if ropts.max_backoff_ms, err = millis(op, "MaxBackoff", opts.MaxBackoff); err != nil {
			return RunReport{}, err
		}
	}
	ropts.until_empty = C.bool(opts.UntilEmpty)
	h, err := c.h.shared(op)
	if err != nil {
		return RunReport{}, err
	}
	defer c.release()
	var stop *C.trib_stop
	if err := callError(op, C.trib_stop_new(&stop, &cerr), cerr); err != nil {
		return RunReport{}, err
	}
	defer C.trib_stop_free(stop)

	state := &compactState{onDrain: opts.OnDrain, onEvent: opts.OnEvent, stop: stop}
	handle := cgo.NewHandle(state)
	defer handle.Delete()
	finish := stopOnCancel(ctx, stop)
	var report C.trib_run_report
	cerr = nil
	rc := C.trib_go_compactor_run(h, &ropts, stop, C.uintptr_t(handle), &report, &cerr)
	finish()
	if state.panicked != nil {
		C.trib_error_free(cerr)
		panic(state.panicked)
	}
	out := RunReport{Rounds: uint64(report.rounds), Lines: uint64(report.lines), SetAside: int(report.set_aside)}
	return out, callError(op, rc, cerr)
}

// DrainUntilEmpty is Run with UntilEmpty set: it drains every source until a pass
// over every journal finds nothing more, then returns (the end of a batch job, an
// application's shutdown). Transient trouble is still retried: bound it with ctx.
func (c *Compactor) DrainUntilEmpty(ctx context.Context, opts RunOptions) (RunReport, error) {
	opts.UntilEmpty = true
	return c.Run(ctx, opts)
}

// Close releases the compactor. It waits for calls in progress — a Run too: cancel
// its ctx first; later calls fail with ErrClosed. Closing twice is harmless.
func (c *Compactor) Close() error {
	if c.h.close() {
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

// Compact is the compactor daemon, the same loop as `tributary compact` (the
// library's, through trib_compact): it drains every *.journal in opts.Spool into
// target (journals that appear later are picked up), pauses for opts.Interval when
// there was nothing to move, and goes on until ctx is done, then returns nil. A ctx
// that is done is noticed within about 10 ms while Compact pauses or waits for the
// target's lock (held by another host, say: nothing is held while waiting), or after the round it is in (a round is never interrupted).
//
// Only an error that needs a human stops it and is returned: a corrupt manifest, a
// truncated or torn target, unexpected bytes at its end, an unsafe filesystem under
// the target, an invalid argument. Everything else is retried and reported once
// through OnEvent: a busy lock (EventContended), transient trouble such as a full
// disk, a share not mounted yet or a target not created yet (EventProblem, retried
// with backoff up to 30 s), and a journal that cannot be drained — junk in the
// spool, a restored or foreign journal — which is set aside (EventSetAside) while
// every other journal keeps draining. A deadline on ctx does not shorten the lock
// timeout (it ends the daemon instead).
//
// With opts.Journals instead of a Spool (a fixed set of journals, trib_compact_journals),
// the same daemon drains those: a journal that is missing or cannot be drained is
// set aside (EventSetAside, once) and tried again when its files change. With
// neither, Compact only keeps the target repaired.
//
// A panic in OnDrain or OnEvent stops the daemon (after the round) and is raised
// again by Compact.
func Compact(ctx context.Context, target string, opts CompactOptions) error {
	if ctx.Err() != nil {
		return nil
	}
	if opts.Spool != "" && len(opts.Journals) > 0 {
		return argError("compact", "give either Journals or Spool, not both (a Compactor takes both)")
	}
	if opts.ForgetKeys {
		return argError("compact", "ForgetKeys is an option of Retire: a daemon forgets nothing")
	}
	c, err := NewCompactor(target, opts.DrainOptions)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Run(ctx, RunOptions{Interval: opts.Interval, OnDrain: opts.OnDrain, OnEvent: opts.OnEvent})
	return err
}

// compactEventFromC turns the C callback's arguments into a CompactEvent and calls
// the options' callbacks. A panic in them is kept (it must not unwind through the
// library's frames) and stops the daemon.
func compactEventFromC(ctx unsafe.Pointer, event C.int, subject *C.char, kind C.int, message *C.char,
	report *C.trib_drain_report) {
	state := cgo.Handle(uintptr(ctx)).Value().(*compactState)
	if state.panicked != nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			state.panicked = p
			C.trib_stop_request(state.stop)
		}
	}()
	ev := CompactEvent{
		Type:    CompactEventType(event),
		Subject: C.GoString(subject),
		Kind:    ErrorKind(kind),
		Message: C.GoString(message),
	}
	if ev.Type == EventCommitted && report != nil && state.onDrain != nil {
		state.onDrain(DrainReport{
			Rounds:            uint64(report.rounds),
			Lines:             uint64(report.lines),
			Bytes:             uint64(report.bytes),
			RepairedTailBytes: uint64(report.repaired_tail_bytes),
			Epoch:             uint64(report.epoch),
			Journals:          int(report.journals),
			Rotations:         uint64(report.rotations),
		})
	}
	if state.onEvent != nil {
		state.onEvent(ev)
	}
}

// stopOnCancel requests a stop on the token when ctx is done, until the returned
// finish is called; finish returns once nothing can use the token any more (it may be
// requesting a stop just as the call returns on its own), so it can then be freed.
func stopOnCancel(ctx context.Context, stop *C.trib_stop) (finish func()) {
	finished, stopperGone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopperGone)
		select {
		case <-ctx.Done():
			C.trib_stop_request(stop)
		case <-finished:
		}
	}()
	return func() {
		close(finished)
		<-stopperGone
	}
}
