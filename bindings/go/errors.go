package tributary

/*
#include "tributary.h"
*/
import "C"

import (
	"context"
	"errors"
	"strconv"
)

// ErrorKind is the stable classification of a failure: one value per result code of
// the C ABI (TRIB_E_*), and the same kinds the Rust crate, the CLI and the Python
// package report.
type ErrorKind int

// The kinds of error. Their numeric values are the C ABI's result codes, taken from
// the header (C.TRIB_E_*); TestEveryHeaderKindIsAGoKind fails while the header and
// this list differ.
const (
	KindInvalidLine       ErrorKind = C.TRIB_E_INVALID_LINE        // a line contains '\n' or is too long; nothing of the call was stored
	KindInvalidArgument   ErrorKind = C.TRIB_E_INVALID_ARG         // an unusable argument, option or offset; a closed handle
	KindJournalFull       ErrorKind = C.TRIB_E_JOURNAL_FULL        // the journal's backlog is at its maximum; nothing was stored
	KindLockTimeout       ErrorKind = C.TRIB_E_LOCK_TIMEOUT        // the target's lock was not granted in time
	KindLockLost          ErrorKind = C.TRIB_E_LOCK_LOST           // the lock was lost while held; the round committed nothing
	KindCorruptManifest   ErrorKind = C.TRIB_E_CORRUPT_MANIFEST    // the target's manifest cannot be trusted
	KindCorruptJournalRow ErrorKind = C.TRIB_E_CORRUPT_JOURNAL_ROW // a journal row does not match its CRC, or is missing
	KindTargetTruncated   ErrorKind = C.TRIB_E_TARGET_TRUNCATED    // the target is shorter than its committed length
	KindUnexpectedTail    ErrorKind = C.TRIB_E_UNEXPECTED_TAIL     // more uncommitted bytes than one drain round can write
	KindTornTarget        ErrorKind = C.TRIB_E_TORN_TARGET         // the target does not end with '\n' where it must
	KindJournalRestored   ErrorKind = C.TRIB_E_JOURNAL_RESTORED    // a journal was restored from an older copy, or cloned
	KindJournalForeign    ErrorKind = C.TRIB_E_JOURNAL_FOREIGN     // a journal was drained into another target
	KindUnsafeFilesystem  ErrorKind = C.TRIB_E_UNSAFE_FILESYSTEM   // a journal on a network filesystem, host-local locks, ...
	KindNotAJournal       ErrorKind = C.TRIB_E_NOT_A_JOURNAL       // the file is not a tributary journal (or, opened as one, a cursor store)
	KindIO                ErrorKind = C.TRIB_E_IO                  // an operating-system I/O error
	KindSQLite            ErrorKind = C.TRIB_E_SQLITE              // an SQLite error from a journal
	KindJournalGone       ErrorKind = C.TRIB_E_JOURNAL_GONE        // the journal was removed, moved or replaced under an open handle
	KindTargetMissing     ErrorKind = C.TRIB_E_TARGET_MISSING      // no target here (never initialised, or the share is not mounted)
	KindPanic             ErrorKind = C.TRIB_E_PANIC               // a bug inside the library, caught at the C boundary
)

var kindNames = map[ErrorKind]string{
	KindInvalidLine:       "invalid_line",
	KindInvalidArgument:   "invalid_argument",
	KindJournalFull:       "journal_full",
	KindLockTimeout:       "lock_timeout",
	KindLockLost:          "lock_lost",
	KindCorruptManifest:   "corrupt_manifest",
	KindCorruptJournalRow: "corrupt_journal_row",
	KindTargetTruncated:   "target_truncated",
	KindUnexpectedTail:    "unexpected_tail",
	KindTornTarget:        "torn_target",
	KindJournalRestored:   "journal_restored",
	KindJournalForeign:    "journal_foreign",
	KindUnsafeFilesystem:  "unsafe_filesystem",
	KindNotAJournal:       "not_a_journal",
	KindIO:                "io",
	KindSQLite:            "sqlite",
	KindJournalGone:       "journal_gone",
	KindTargetMissing:     "target_missing",
	KindPanic:             "panic",
}

// String returns the kind's stable snake_case name ("journal_full", ...), the name
// the CLI prints as "error [journal_full]".
func (k ErrorKind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "unknown(" + strconv.Itoa(int(k)) + ")"
}

// A sentinel is the value errors.Is matches for a kind (or a group of kinds).
type sentinel struct{ text string }

func (s *sentinel) Error() string { return "tributary: " + s.text }

// Sentinel errors, one per kind, for errors.Is:
//
//	if errors.Is(err, tributary.ErrJournalFull) { ... drain, then retry ... }
//
// Every error this package returns for a failed call is an *Error (use errors.As
// for its Kind and the library's message); it matches the sentinel of its kind, and
// a corruption of either kind also matches ErrCorrupt.
var (
	ErrInvalidLine       error = &sentinel{"invalid line"}
	ErrInvalidArgument   error = &sentinel{"invalid argument"}
	ErrJournalFull       error = &sentinel{"journal full"}
	ErrLockTimeout       error = &sentinel{"lock timeout"}
	ErrLockLost          error = &sentinel{"lock lost"}
	ErrCorruptManifest   error = &sentinel{"corrupt manifest"}
	ErrCorruptJournalRow error = &sentinel{"corrupt journal row"}
	ErrTargetTruncated   error = &sentinel{"target truncated"}
	ErrUnexpectedTail    error = &sentinel{"unexpected tail"}
	ErrTornTarget        error = &sentinel{"torn target"}
	ErrJournalRestored   error = &sentinel{"journal restored"}
	ErrJournalForeign    error = &sentinel{"journal foreign"}
	ErrUnsafeFilesystem  error = &sentinel{"unsafe filesystem"}
	ErrNotAJournal       error = &sentinel{"not a journal"}
	ErrIO                error = &sentinel{"I/O error"}
	ErrSQLite            error = &sentinel{"SQLite error"}
	ErrJournalGone       error = &sentinel{"journal gone"}
	ErrTargetMissing     error = &sentinel{"target missing"}
	ErrPanic             error = &sentinel{"panic inside the library"}

	// ErrCorrupt matches both ErrCorruptManifest and ErrCorruptJournalRow: stored
	// data that tributary will not trust and will not silently repair.
	ErrCorrupt error = &sentinel{"corrupt data"}

	// ErrClosed matches a call on a Journal or Reader after its Close. Such an error
	// is of kind KindInvalidArgument (a closed handle is an unusable argument in
	// every front end), so it matches ErrInvalidArgument too.
	ErrClosed error = &sentinel{"use of a closed handle"}
)

var kindSentinels = map[ErrorKind]error{
	KindInvalidLine:       ErrInvalidLine,
	KindInvalidArgument:   ErrInvalidArgument,
	KindJournalFull:       ErrJournalFull,
	KindLockTimeout:       ErrLockTimeout,
	KindLockLost:          ErrLockLost,
	KindCorruptManifest:   ErrCorruptManifest,
	KindCorruptJournalRow: ErrCorruptJournalRow,
	KindTargetTruncated:   ErrTargetTruncated,
	KindUnexpectedTail:    ErrUnexpectedTail,
	KindTornTarget:        ErrTornTarget,
	KindJournalRestored:   ErrJournalRestored,
	KindJournalForeign:    ErrJournalForeign,
	KindUnsafeFilesystem:  ErrUnsafeFilesystem,
	KindNotAJournal:       ErrNotAJournal,
	KindIO:                ErrIO,
	KindSQLite:            ErrSQLite,
	KindJournalGone:       ErrJournalGone,
	KindTargetMissing:     ErrTargetMissing,
	KindPanic:             ErrPanic,
}

// Error is a failed call: which call (Op), the kind of failure and the library's
// message, which says what happened and what to do.
//
//	var e *tributary.Error
//	if errors.As(err, &e) && e.Kind == tributary.KindInvalidLine {
//		log.Printf("line %d of the batch was refused: %s", e.LineIndex, e.Message)
//	}
type Error struct {
	// Op names the call that failed: "append", "append batch", "drain", "open
	// reader", ...
	Op string
	// Kind classifies the failure; errors.Is(err, ErrXxx) tests it too.
	Kind ErrorKind
	// Message is the library's description (it names paths, seqs, sizes).
	Message string
	// LineIndex is, for KindInvalidLine, the 0-based index of the refused line
	// within the call (0 for Append); -1 for every other kind.
	LineIndex int
	// RecordsNotStored is, from an Appender's Close, how many lines it gave up on:
	// pushed or gathered, never stored (their commits kept failing). 0 for every
	// other error (a failed Flush's lines stay queued and are retried). Close may
	// return two such errors joined; RecordsNotStored(err) adds them up.
	RecordsNotStored uint64

	// also lists further errors this one matches (ErrClosed, a context error).
	also []error
}

// RecordsNotStored is how many lines the *Errors in err (errors.Join'ed ones
// included) say were never stored: what an Appender's Close gave up on.
func RecordsNotStored(err error) uint64 {
	switch e := err.(type) {
	case nil:
		return 0
	case *Error:
		return e.RecordsNotStored
	case interface{ Unwrap() []error }:
		var n uint64
		for _, inner := range e.Unwrap() {
			n += RecordsNotStored(inner)
		}
		return n
	case interface{ Unwrap() error }:
		return RecordsNotStored(e.Unwrap())
	}
	return 0
}

func (e *Error) Error() string {
	if e.Op == "" {
		return "tributary: " + e.Message
	}
	return "tributary: " + e.Op + ": " + e.Message
}

// Unwrap lets errors.Is match the sentinel of e's kind (and ErrCorrupt,
// ErrClosed, or context.DeadlineExceeded where they apply).
func (e *Error) Unwrap() []error {
	out := make([]error, 0, 2+len(e.also))
	if s, ok := kindSentinels[e.Kind]; ok {
		out = append(out, s)
	}
	if e.Kind == KindCorruptManifest || e.Kind == KindCorruptJournalRow {
		out = append(out, ErrCorrupt)
	}
	return append(out, e.also...)
}

// argError is an invalid-argument error detected on the Go side, worded like the
// library's own.
func argError(op, detail string) *Error {
	return &Error{Op: op, Kind: KindInvalidArgument, Message: "invalid argument: " + detail, LineIndex: -1}
}

// closedError is the error of a call on a closed handle.
func closedError(op, what string) *Error {
	e := argError(op, "the "+what+" is closed")
	e.also = []error{ErrClosed}
	return e
}

// withDeadline marks a lock timeout that the context's deadline shortened, so it
// also matches context.DeadlineExceeded.
func withDeadline(err error) error {
	return withContext(err, context.DeadlineExceeded)
}

// withContext makes a lock timeout that ctx's end cut short match ctxErr too
// (context.Canceled or context.DeadlineExceeded).
func withContext(err, ctxErr error) error {
	if e, ok := err.(*Error); ok && e.Kind == KindLockTimeout && !errors.Is(e, ctxErr) {
		e.also = append(e.also, ctxErr)
		// said in the text too: "not granted within 304 ms" alone read as a holder
		// that kept the lock, not a wait the caller ended (an outside tester)
		e.Message += " (the wait was ended by the context: " + ctxErr.Error() + ")"
	}
	return err
}
