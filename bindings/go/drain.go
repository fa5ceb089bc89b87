package tributary

/*
#include <stdlib.h>
#include "tributary.h"
*/
import "C"

import (
	"context"
	"fmt"
	"time"
	"unsafe"
)

// DrainOptions say which journals Drain moves into the target, and how. Give either
// Journals or Spool, not both; with neither, Drain only repairs the target. The
// target must exist (Init, or `tributary init`) unless Create is set: a drain into a
// target that was never created, or whose share is not mounted, is ErrTargetMissing.
// A zero field keeps its default.
type DrainOptions struct {
	// Journals are journal paths. A path that does not exist is ErrNotAJournal: a
	// drain never creates journals (their writers do, with OpenJournal).
	Journals []string
	// Spool is a folder of journals: every *.journal file directly in it. A file
	// that cannot be drained (junk, a foreign or restored journal) does not keep the
	// others from draining: Drain drains them, then returns that file's error (the
	// first such file's).
	Spool string

	// LockTimeout is how long to wait for the target's lock (default 30 s). A
	// deadline on Drain's context shortens it.
	LockTimeout time.Duration
	// MaxRoundBytes is the most one round writes (default 64 MiB; a round that
	// queued for another compactor's lock at most 4 MiB); also the longest
	// uncommitted tail a round repairs.
	MaxRoundBytes uint64
	// MaxRoundTime stops reading lines into a round after this long (default 2 s; a
	// round that queued for another compactor's lock at most 100 ms).
	MaxRoundTime time.Duration
	// MaxLineBytes is the longest line any writer may append (default 1 MiB); it
	// bounds a round too.
	MaxLineBytes int
	// JournalBusyTimeout is the SQLite busy timeout of the journals the drain
	// opens (default 30 s).
	JournalBusyTimeout time.Duration
	// AllowNetworkFS accepts journals on a network filesystem.
	AllowNetworkFS bool

	// RotateBytes turns on managed rotation by size: a round that finds the current
	// generation holding at least this many committed bytes first renames it to
	// "<target>.<generation>" and starts a new, empty generation (checked at the
	// start of each round, so a generation may exceed it by up to one round).
	// Exactly-once holds across rotations and Readers follow them (see Cursor).
	// 0 (default): no rotation by size. Never rotate a target with logrotate.
	RotateBytes uint64
	// RotateLines turns on managed rotation by committed line count; either limit
	// triggers a rotation. 0 (default): no rotation by line count.
	RotateLines uint64
	// RetainGenerations keeps at most this many rotated generations, deleting the
	// oldest (a Reader still in a deleted generation fails with ErrInvalidArgument).
	// 0 (default): keep them all.
	RetainGenerations uint64

	// Create creates the target if it does not exist yet, as Init does. Leave it
	// false in daemons: an unmounted share must be an error, not a new empty target.
	Create bool

	// ForgetKeys (Retire only) retires a journal even while it holds idempotency
	// keys within their retention or processed cursors: they are deleted with it,
	// so a keyed resend of its lines, or a processor resuming from its cursor, would
	// store lines twice. Only once its writers can no longer resend and its
	// processor has finished (as `tributary retire --forget-keys`). Drain and
	// NewCompactor refuse it (ErrInvalidArgument).
	ForgetKeys bool
}

func (o *DrainOptions) toC(op string) (C.trib_compactor_options, error) {
	var c C.trib_compactor_options
	if o.ForgetKeys && op != "retire" {
		return c, argError(op, "ForgetKeys is an option of Retire: a drain forgets nothing")
	}
	var cerr *C.trib_error
	if err := callError(op, C.trib_compactor_options_default(&c, &cerr), cerr); err != nil {
		return c, err
	}
	var err error
	if o.LockTimeout != 0 {
		if c.lock_timeout_ms, err = millis(op, "LockTimeout", o.LockTimeout); err != nil {
			return c, err
		}
	}
	if o.MaxRoundBytes != 0 {
		c.max_round_bytes = C.uint64_t(o.MaxRoundBytes)
	}
	if o.MaxRoundTime != 0 {
		if c.max_round_time_ms, err = millis(op, "MaxRoundTime", o.MaxRoundTime); err != nil {
			return c, err
		}
	}
	if o.MaxLineBytes < 0 {
		return c, argError(op, fmt.Sprintf("MaxLineBytes is negative (%d)", o.MaxLineBytes))
	}
	if o.MaxLineBytes > 0 {
		c.max_line_bytes = C.size_t(o.MaxLineBytes)
	}
	if o.JournalBusyTimeout != 0 {
		if c.journal_busy_timeout_ms, err = millis(op, "JournalBusyTimeout", o.JournalBusyTimeout); err != nil {
			return c, err
		}
	}
	c.allow_network_fs = C.bool(o.AllowNetworkFS)
	c.rotate_bytes = C.uint64_t(o.RotateBytes)
	c.rotate_lines = C.uint64_t(o.RotateLines)
	c.retain_generations = C.uint64_t(o.RetainGenerations)
	c.create = C.bool(o.Create)
	return c, nil
}

// InitReport says what Init found or did.
type InitReport struct {
	TargetID     string // the target's id, 32 hex digits
	Created      bool   // this call created the target (sidecar and first manifest)
	AdoptedLines uint64 // lines of a pre-existing file adopted as committed (when Created)
	Upgraded     bool   // a target of an older manifest format was upgraded
	// Rebound is true when a replaced target file (restored or copied together with
	// its sidecar) was accepted because its committed part matched.
	Rebound bool
}

// Init creates target once — its sidecar, first manifest and the file itself (an
// existing file's whole lines are adopted as committed) — or, if it exists, checks
// it (and upgrades an older manifest format). Drains never create a target unless
// DrainOptions.Create is set. ctx is checked before anything starts.
func Init(ctx context.Context, target string) (InitReport, error) {
	return InitInFormat(ctx, target, 0)
}

// InitInFormat is Init, then, with manifestFormat 2 or 3, makes a new target in that
// format or switches an existing one to it: 3 (the default for new targets) commits
// only what changed and is read by tributary 0.2.0 and later; 2 for a target that
// older builds drain too (docs/design.md "Manifest deltas"). 0 is Init: a new target
// in 3, an existing one keeps its format (Status tells it). Another value is
// ErrInvalidArgument, nothing done.
func InitInFormat(ctx context.Context, target string, manifestFormat int) (InitReport, error) {
	const op = "init"
	if err := ctx.Err(); err != nil {
		return InitReport{}, err
	}
	if manifestFormat != 0 && manifestFormat != 2 && manifestFormat != 3 {
		return InitReport{}, argError(op, fmt.Sprintf("manifestFormat is %d: give 2, 3, or 0 (as Init)", manifestFormat))
	}
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return InitReport{}, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var r C.trib_init_report
	var cerr *C.trib_error
	if err := callError(op, C.trib_init_in_format(ctarget, nil, C.uint32_t(manifestFormat), &r, &cerr), cerr); err != nil {
		return InitReport{}, err
	}
	return InitReport{
		TargetID:     C.GoString(&r.target_id[0]),
		Created:      bool(r.created),
		AdoptedLines: uint64(r.adopted_lines),
		Upgraded:     bool(r.upgraded),
		Rebound:      bool(r.rebound),
	}, nil
}

// DrainReport says what a Drain did.
type DrainReport struct {
	Rounds uint64 // rounds that committed something
	Lines  uint64 // lines committed to the target
	Bytes  uint64 // their bytes, with their '\n's
	// RepairedTailBytes is the length of an uncommitted tail, left by a crashed
	// drain, that was truncated before writing.
	RepairedTailBytes uint64
	Epoch             uint64 // the manifest's epoch afterwards
	Journals          int    // how many journals contributed lines
	// Rotations is how many generations managed rotation rotated out (including
	// an interrupted rotation that this drain completed).
	Rotations uint64
}

// Drain moves the lines that the journals hold when it starts into the target,
// exactly once, and returns what it did. It works in bounded rounds (see
// DrainOptions), each under the target's lock, released between rounds so other
// compactors get turns. Many goroutines and processes, on one host or several, may
// drain into the same target at once: they take turns on the lock.
//
// Cancellation. ctx is checked before anything starts: a Drain whose ctx is
// already done does nothing and returns ctx.Err(). A deadline on ctx bounds the wait
// for the target's lock (the shorter of it and opts.LockTimeout); a lock timeout
// that the deadline cut short matches both ErrLockTimeout and
// context.DeadlineExceeded. Cancelling ctx ends a wait for the lock within about 10
// ms: Drain then returns an error matching both ErrLockTimeout and ctx.Err() (what
// earlier rounds committed stays committed; the report is empty). A round that holds the lock runs to completion (the
// library cannot be interrupted in the middle of one); each is bounded by
// MaxRoundBytes and MaxRoundTime. A Drain ends when the lines present at its start
// are committed: if it returns nil, they are, even if ctx was cancelled meanwhile.
// A cancelled Drain never leaves anything half-done: an interrupted round (only a
// killed process can interrupt one) is repaired by the next drain.
//
// With a Spool, a file that cannot be drained (junk, a foreign or restored journal)
// does not keep the others from draining: Drain returns what it drained with the
// first such file's error.
func Drain(ctx context.Context, target string, opts DrainOptions) (DrainReport, error) {
	const op = "drain"
	if err := ctx.Err(); err != nil {
		return DrainReport{}, err
	}
	copts, err := opts.toC(op)
	if err != nil {
		return DrainReport{}, err
	}
	shortened := false
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		if left <= 0 {
			return DrainReport{}, context.DeadlineExceeded
		}
		// Round up so that a sub-millisecond remainder still tries the lock once.
		ms := C.uint64_t((left + time.Millisecond - 1) / time.Millisecond)
		if ms < copts.lock_timeout_ms {
			copts.lock_timeout_ms = ms
			shortened = true
		}
	}
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return DrainReport{}, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var cspool *C.char
	if opts.Spool != "" {
		if cspool, err = cString(op, "spool", opts.Spool); err != nil {
			return DrainReport{}, err
		}
		defer C.free(unsafe.Pointer(cspool))
	}
	paths, freePaths, err := cPaths(op, opts.Journals)
	if err != nil {
		return DrainReport{}, err
	}
	defer freePaths()
	var r C.trib_drain_report
	var cerr *C.trib_error
	var rc C.int
	if ctx.Done() == nil { // never cancelled: no stop token
		rc = C.trib_drain(ctarget, paths, C.size_t(len(opts.Journals)), cspool, &copts, &r, &cerr)
	} else {
		var stop *C.trib_stop
		if err := callError(op, C.trib_stop_new(&stop, &cerr), cerr); err != nil {
			return DrainReport{}, err
		}
		finish := stopOnCancel(ctx, stop)
		cerr = nil
		rc = C.trib_drain_stoppable(ctarget, paths, C.size_t(len(opts.Journals)), cspool, &copts, stop, &r, &cerr)
		finish()
		C.trib_stop_free(stop)
	}
	report := DrainReport{
		Rounds:            uint64(r.rounds),
		Lines:             uint64(r.lines),
		Bytes:             uint64(r.bytes),
		RepairedTailBytes: uint64(r.repaired_tail_bytes),
		Epoch:             uint64(r.epoch),
		Journals:          int(r.journals),
		Rotations:         uint64(r.rotations),
	}
	if err := callError(op, rc, cerr); err != nil {
		if shortened {
			err = withDeadline(err)
		}
		if ctx.Err() != nil {
			err = withContext(err, ctx.Err())
		}
		return report, err
	}
	return report, nil
}

// Retire retires journals, the supported way to remove one: it drains each into
// target until it is empty, then deletes its files (the journal, "-wal", "-shm")
// while holding its write lock, once every line it ever held is committed. A Journal
// that still has one open gets ErrJournalGone on its next append (nothing stored):
// stop the writers first. opts.Journals names the journals (opts.Spool must be
// empty); the other options are those of Drain. A deadline on ctx shortens the lock
// timeout, and cancelling ctx ends a wait for the lock within about 10 ms, as for
// Drain: the journals that drain was for are not deleted (the error matches
// ErrLockTimeout and ctx.Err()); a drain in progress finishes, and the commit that
// records journals already deleted as retired still waits for the lock. A path that names no file (a journal retired before leaves
// none, or a wrong path) is an ErrNotAJournal error naming it, returned after the
// other journals were retired, with their number. A journal holding idempotency keys
// within their retention or processed cursors is refused (ErrInvalidArgument, nothing
// retired): they would go with it, and a keyed resend or a processor resuming from
// its cursor would store lines twice; opts.ForgetKeys retires it anyway.
func Retire(ctx context.Context, target string, opts DrainOptions) (int, error) {
	const op = "retire"
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if opts.Spool != "" || len(opts.Journals) == 0 {
		return 0, &Error{Op: op, Kind: KindInvalidArgument, Message: "give the journals to retire in Journals (not Spool)", LineIndex: -1}
	}
	copts, err := opts.toC(op)
	if err != nil {
		return 0, err
	}
	shortened := false
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, context.DeadlineExceeded
		}
		ms := C.uint64_t((left + time.Millisecond - 1) / time.Millisecond)
		if ms < copts.lock_timeout_ms {
			copts.lock_timeout_ms = ms
			shortened = true
		}
	}
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	n := len(opts.Journals)
	paths, freePaths, err := cPaths(op, opts.Journals)
	if err != nil {
		return 0, err
	}
	defer freePaths()
	var retired C.size_t
	var cerr *C.trib_error
	var stop *C.trib_stop
	finish := func() {}
	if ctx.Done() != nil { // cancellable: a stop token ends the wait for the lock
		if err := callError(op, C.trib_stop_new(&stop, &cerr), cerr); err != nil {
			return 0, err
		}
		defer C.trib_stop_free(stop)
		finish = stopOnCancel(ctx, stop)
		cerr = nil
	}
	rc := C.trib_retire_stoppable(ctarget, paths, C.size_t(n), &copts, C.bool(opts.ForgetKeys), stop, &retired, &cerr)
	finish()
	if err := callError(op, rc, cerr); err != nil {
		if shortened {
			err = withDeadline(err)
		}
		if ctx.Err() != nil {
			err = withContext(err, ctx.Err())
		}
		// a path that names no file (ErrNotAJournal) comes after the others were
		// retired: retired says how many
		return int(retired), err
	}
	return int(retired), nil
}

// cPaths copies journal paths into a C array of C strings (every pointer C sees lives
// in C memory); free releases both, also after an error. NULL for no paths.
func cPaths(op string, journals []string) (paths **C.char, free func(), err error) {
	n := len(journals)
	if n == 0 {
		return nil, func() {}, nil
	}
	paths = (**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	arr := unsafe.Slice(paths, n)
	free = func() {
		for _, p := range arr {
			C.free(unsafe.Pointer(p))
		}
		C.free(unsafe.Pointer(paths))
	}
	for i, p := range journals {
		if arr[i], err = cString(op, fmt.Sprintf("Journals[%d]", i), p); err != nil {
			free()
			return nil, nil, err
		}
	}
	return paths, free, nil
}
