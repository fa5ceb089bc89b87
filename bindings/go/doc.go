// Package tributary lets many writers, on many hosts, append lines to one file on a
// shared filesystem (NFS, GlusterFS, CephFS, or a local disk) exactly once: every
// line a writer was told is accepted ends up in the file once, never lost,
// duplicated, torn or interleaved, and the lines of one writer keep their order,
// even when any process is killed at any moment.
//
// It is a cgo binding of libtributary's C ABI (include/tributary.h).
//
// # The three roles
//
// Writers append lines to a Journal, an SQLite file on their host's local disk;
// Append returns the line's seq once it is durable:
//
//	j, err := tributary.OpenJournal("/var/spool/app/web1.journal", nil)
//	...
//	defer j.Close()
//	seq, err := j.Append([]byte("GET /index.html 200"))
//
// The target is created once (drains never create one, so an unmounted share is an
// error, not a new empty file):
//
//	_, err := tributary.Init(ctx, "/mnt/shared/events.log")
//
// A compactor (one per host; they take turns on the target's lock) moves the lines
// into the shared target file, exactly once:
//
//	report, err := tributary.Drain(ctx, "/mnt/shared/events.log",
//		tributary.DrainOptions{Spool: "/var/spool/app"})
//
// or keeps doing so with Compact; with DrainOptions.RotateBytes or RotateLines it
// rotates the target into generations (events.log.1, events.log.2, ...) as it goes.
// Readers, anywhere, read the committed lines from a Cursor (a generation and a byte
// offset in it), and can follow the target as it grows and rotates:
//
//	r, err := tributary.OpenReaderAt("/mnt/shared/events.log", tributary.CursorStart)
//	...
//	for line := range r.Lines(ctx) {
//		if line.Err != nil { ... }
//		process(line.Bytes) // keep line.Cursor to resume after this line
//	}
//
// Keep that Cursor in a CursorStore (OpenCursorStore), or, when the results go to a
// Journal, commit them together with it in one transaction (AppendBatchWithCursor,
// read back with Journal.Cursor). Reader.Lag says how far a reader is behind.
//
// NewWriter adapts a Journal to io.Writer (one journal line per '\n'-terminated
// line) and NewSlogHandler to log/slog (one JSON line per record).
//
// # Errors
//
// Every failed call returns an *Error carrying the Op, the Kind and the library's
// message (which says what to do). Test kinds with errors.Is and the sentinels
// (ErrInvalidLine, ErrJournalFull, ErrLockTimeout, ErrCorrupt, ...) or get the
// details with errors.As. Errors come back from the very C call that failed.
//
// # Concurrency and blocking
//
// A Journal is safe for concurrent use, and goroutines should share one: their
// appends are group-committed. Appends block until the line is durable (an fsync
// with DurabilityFull). Drain blocks for the lock and its rounds; its context bounds
// the lock wait but cannot interrupt a round in progress (see Drain). A Reader waits
// for new lines in slices of at most 100 ms so that its context is honoured. Each
// blocking call occupies one OS thread while it runs inside the library.
//
// Close releases a Journal or Reader; Close is idempotent, and a finalizer closes a
// handle that was garbage-collected unclosed, as a backstop only.
//
// # Building
//
// Inside the tributary repository the package links the library that `cargo build
// --release` leaves in target/release (with an rpath: no LD_LIBRARY_PATH needed).
// To link an installed library instead, build with -tags tributary_external and set
// CGO_CFLAGS/CGO_LDFLAGS; see docs/go.md.
package tributary
