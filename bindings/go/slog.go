package tributary

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// SlogHandler is a log/slog Handler that writes each record as one JSON line (the
// format of slog.NewJSONHandler) to a Journal; Handle returns once the record is
// durable. A record never spans lines: newlines in messages and values are escaped
// by the JSON encoding.
//
// It is safe for concurrent use. Records are formatted one at a time but appended
// concurrently, so goroutines that log at once share fsyncs (group commit).
type SlogHandler struct {
	j     LineSink
	inner slog.Handler
	fmt   *slogFormatter
	// failed counts the records Handle could not hand over (shared with the handlers
	// WithAttrs/WithGroup derive): slog.Logger discards Handle's error, so without it
	// a refused record (longer than MaxLineBytes, a full journal) left no trace.
	failed *atomic.Uint64
}

// Failed is how many records this handler (and those WithAttrs and WithGroup made
// from it) could not hand over: Handle returned an error, which slog.Logger discards
// (a record longer than the journal's MaxLineBytes, ErrJournalFull, a closed journal).
// Over an Appender it also counts the records dropped when handing them over met an
// error retrying cannot fix (records are gathered and handed over in groups:
// Appender.Stats().Refused, shared by every handler and Writer of that Appender).
// The records the Appender's Close gives up on are counted by RecordsNotStored(the
// error Close returned), not here: Failed() + RecordsNotStored(err) is every record
// lost, each once.
// Records a full queue dropped under DropWhenFull are not here: they are counted in
// Appender.Stats().Dropped. Watch it the way Python's JournalHandler.failed_records
// is watched.
func (h *SlogHandler) Failed() uint64 {
	n := h.failed.Load()
	if a, ok := h.j.(*Appender); ok {
		n += a.g.refused.Load()
	}
	return n
}

// slogFormatter is the buffer the inner JSON handler writes one record into; it is
// shared by a handler and every handler derived from it by WithAttrs/WithGroup.
type slogFormatter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// NewSlogHandler returns a handler that logs to j. opts may be nil; it is used as
// by slog.NewJSONHandler (level, source, ReplaceAttr).
//
//	logger := slog.New(tributary.NewSlogHandler(journal, nil))
//	logger.Info("request", "path", "/index.html", "status", 200)
//
// With an *Appender (background commit), Handle returns once the record is gathered:
// records are handed to the Appender in groups (every 32 KiB, or a quarter of its
// Window after the first), each durable within the Window of its Handle, and after
// Appender.Flush.
func NewSlogHandler(j LineSink, opts *slog.HandlerOptions) *SlogHandler {
	if a, ok := j.(*Appender); ok {
		// Gathering is a copy and never waits for a disk: slog's JSON handler formats
		// concurrently and gathers under its own write lock, with no copy of ours.
		return &SlogHandler{j: j, inner: slog.NewJSONHandler(pushWriter{a}, opts), failed: new(atomic.Uint64)}
	}
	f := &slogFormatter{}
	return &SlogHandler{j: j, inner: slog.NewJSONHandler(&f.buf, opts), fmt: f, failed: new(atomic.Uint64)}
}

// pushWriter is what slog's JSON handler writes one record into when the handler is
// over an Appender: the record's line, gathered for the Appender.
type pushWriter struct{ a *Appender }

func (w pushWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSuffix(p, []byte{'\n'})
	if bytes.IndexByte(line, '\n') >= 0 { // whitespace from a custom json.Marshaler: as below
		line = bytes.ReplaceAll(line, []byte{'\n'}, []byte{' '})
	}
	if len(line) > w.a.maxLine {
		return 0, &Error{Op: "push", Kind: KindInvalidLine, LineIndex: 0, Message: fmt.Sprintf(
			"invalid line (index 0): %d bytes, longer than the maximum of %d; not queued", len(line), w.a.maxLine)}
	}
	if err := w.a.gather([][]byte{line}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Enabled reports whether records at level are logged.
func (h *SlogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle formats r as one line and appends it to the journal. An error is counted
// in Failed (slog.Logger discards it).
func (h *SlogHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.handle(ctx, r)
	if err != nil {
		h.failed.Add(1)
	}
	return err
}

func (h *SlogHandler) handle(ctx context.Context, r slog.Record) error {
	if h.fmt == nil { // over an Appender: the inner handler pushes (pushWriter)
		return h.inner.Handle(ctx, r)
	}
	h.fmt.mu.Lock()
	h.fmt.buf.Reset()
	err := h.inner.Handle(ctx, r)
	line := bytes.Clone(bytes.TrimSuffix(h.fmt.buf.Bytes(), []byte{'\n'}))
	h.fmt.mu.Unlock()
	if err != nil {
		return err
	}
	// JSON never needs a raw newline (inside strings it is escaped as \n), so one
	// here can only be whitespace between tokens, e.g. from a custom
	// json.Marshaler: a space means the same.
	for i, b := range line {
		if b == '\n' {
			line[i] = ' '
		}
	}
	_, err = h.j.appendLines([][]byte{line})
	return err
}

// WithAttrs returns a handler whose records carry attrs too.
func (h *SlogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &SlogHandler{j: h.j, inner: h.inner.WithAttrs(attrs), fmt: h.fmt, failed: h.failed}
}

// WithGroup returns a handler that puts later attributes in the group name.
func (h *SlogHandler) WithGroup(name string) slog.Handler {
	return &SlogHandler{j: h.j, inner: h.inner.WithGroup(name), fmt: h.fmt, failed: h.failed}
}
