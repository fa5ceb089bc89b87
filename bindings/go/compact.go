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
static int trib_go_compact(const char *target, const char *spool, const trib_compactor_options *options,
                           uint64_t interval_ms, const trib_stop *stop, uintptr_t handle, trib_compact_report *report,
                           trib_error **err) {
	return trib_compact(target, spool, options, interval_ms, stop, trib_go_event, (void *)handle, report, err);
}

static int trib_go_compact_journals(const char *target, const char *const *journals, size_t n,
                                    const trib_compactor_options *options, uint64_t interval_ms,
                                    const trib_stop *stop, uintptr_t handle, trib_compact_report *report,
                                    trib_error **err) {
	return trib_compact_journals(target, journals, n, options, interval_ms, stop, trib_go_event, (void *)handle,
	                             report, err);
}
*/
import "C"

import (
	"context"
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
	opts     *CompactOptions
	stop     *C.trib_stop
	panicked any // a panic of OnDrain or OnEvent, raised again once trib_compact returned
}

// Compact is the compactor daemon, the same loop as `tributary compact` (the
// library's, through trib_compact): it drains every *.journal in opts.Spool into
// target (journals that appear later are picked up), pauses for opts.Interval when
// there was nothing to move, and goes on until ctx is done, then returns nil. A ctx
// that is done is noticed within about 10 ms while Compact waits, or after the
// round it is in (a round is never interrupted).
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
	const op = "compact"
	if opts.Spool != "" && len(opts.Journals) > 0 {
		return argError(op, "give either Journals or Spool, not both")
	}
	copts, err := opts.DrainOptions.toC(op)
	if err != nil {
		return err
	}
	var intervalMs C.uint64_t
	if opts.Interval != 0 {
		if intervalMs, err = millis(op, "Interval", opts.Interval); err != nil {
			return err
		}
	}
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var cspool *C.char
	if opts.Spool != "" {
		if cspool, err = cString(op, "spool", opts.Spool); err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(cspool))
	}
	paths, freePaths, err := cPaths(op, opts.Journals)
	if err != nil {
		return err
	}
	defer freePaths()
	var stop *C.trib_stop
	var cerr *C.trib_error
	if err := callError(op, C.trib_stop_new(&stop, &cerr), cerr); err != nil {
		return err
	}
	defer C.trib_stop_free(stop)

	state := &compactState{opts: &opts, stop: stop}
	handle := cgo.NewHandle(state)
	defer handle.Delete()
	// The stop token is freed only once this goroutine is gone: it may still be
	// requesting a stop when trib_compact returns on its own.
	finished, stopperGone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopperGone)
		select {
		case <-ctx.Done():
			C.trib_stop_request(stop)
		case <-finished:
		}
	}()
	var report C.trib_compact_report
	cerr = nil
	var rc C.int
	if cspool != nil {
		rc = C.trib_go_compact(ctarget, cspool, &copts, intervalMs, stop, C.uintptr_t(handle), &report, &cerr)
	} else {
		rc = C.trib_go_compact_journals(ctarget, paths, C.size_t(len(opts.Journals)), &copts, intervalMs, stop,
			C.uintptr_t(handle), &report, &cerr)
	}
	close(finished)
	<-stopperGone
	if state.panicked != nil {
		C.trib_error_free(cerr)
		panic(state.panicked)
	}
	return callError(op, rc, cerr)
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
	if ev.Type == EventCommitted && report != nil && state.opts.OnDrain != nil {
		state.opts.OnDrain(DrainReport{
			Rounds:            uint64(report.rounds),
			Lines:             uint64(report.lines),
			Bytes:             uint64(report.bytes),
			RepairedTailBytes: uint64(report.repaired_tail_bytes),
			Epoch:             uint64(report.epoch),
			Journals:          int(report.journals),
			Rotations:         uint64(report.rotations),
		})
	}
	if state.opts.OnEvent != nil {
		state.opts.OnEvent(ev)
	}
}
