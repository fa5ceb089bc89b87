package tributary

import (
	"bytes"
	"fmt"
	"sync"
)

// A LineSink takes whole lines from a Writer or a SlogHandler: a *Journal (a Write
// or a record returns once durable) or an *Appender (it returns once queued; durable
// within the Appender's Window, or after its Flush).
type LineSink interface {
	// MaxLineBytes is the longest line accepted.
	MaxLineBytes() int
	// appendLines hands over lines; on error, taken is how many of the first lines
	// were taken all the same (an Appender queued them: they will be committed).
	appendLines(lines [][]byte) (taken int, err error)
}

// A Writer is an io.Writer over a Journal or an Appender: each '\n'-terminated line
// written to it becomes one journal line (without the '\n'). A trailing partial line
// is kept until a later Write completes it, or Flush or Close appends it as a line of
// its own.
//
// Over a Journal, each Write appends the lines it completes as one batch,
// all-or-nothing, and returns once they are durable; over an Appender, it gathers
// them for the Appender (background commit: handed over in groups, each line durable
// within the Appender's Window of its Write; a hand-over that fails keeps them for the
// next, and the Appender's Flush says so until they are stored). It returns len(p),
// nil, or 0 and the error with nothing of p stored or buffered (a line longer than
// MaxLineBytes, ErrJournalFull, a closed journal or Appender, or one whose hand-overs
// keep failing with MaxQueueBytes already gathered). A partial line that grows longer than MaxLineBytes is refused as soon
// as it does, with ErrInvalidLine. A journal retired or removed under the
// Writer (ErrJournalGone: nothing of the batch stored) is opened again at its path
// and the batch appended there, as a SlogHandler does: a logger outlives its
// journal's retirement.
//
// A Writer is safe for concurrent use; its Writes are serialized (one batch at a
// time). For many goroutines writing whole lines, call Journal.Append directly, or
// use NewSlogHandler: concurrent appends share fsyncs.
type Writer struct {
	j       LineSink
	mu      sync.Mutex
	partial []byte
}

// NewWriter returns a Writer that appends to dst (a *Journal or an *Appender).
// Closing the Writer does not close dst.
func NewWriter(dst LineSink) *Writer {
	return &Writer{j: dst}
}

// Write appends every line that p completes, as one batch.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := bytes.LastIndexByte(p, '\n')
	if last < 0 {
		if len(w.partial)+len(p) > w.j.MaxLineBytes() {
			return 0, w.tooLong(len(w.partial) + len(p))
		}
		w.partial = append(w.partial, p...)
		return len(p), nil
	}
	rest := p[last+1:]
	if len(rest) > w.j.MaxLineBytes() {
		return 0, w.tooLong(len(rest))
	}
	var lines [][]byte
	first, more, _ := bytes.Cut(p[:last+1], []byte{'\n'})
	if len(w.partial) > 0 {
		lines = append(lines, append(w.partial[:len(w.partial):len(w.partial)], first...))
	} else {
		lines = append(lines, first)
	}
	for len(more) > 0 {
		var l []byte
		l, more, _ = bytes.Cut(more, []byte{'\n'})
		lines = append(lines, l)
	}
	if taken, err := w.j.appendLines(lines); err != nil {
		if taken == 0 {
			return 0, err
		}
		// An Appender queued the first lines before it failed: they will be
		// committed, so say how much of p they were (the partial line went with
		// the first). Nothing after them is queued or kept.
		n := len(first) - len(lines[0]) // the partial line's bytes are not p's
		for _, l := range lines[:taken] {
			n += len(l) + 1
		}
		w.partial = w.partial[:0]
		return n, err
	}
	w.partial = append(w.partial[:0], rest...)
	return len(p), nil
}

// WriteString is Write for a string.
func (w *Writer) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

func (w *Writer) tooLong(n int) error {
	return &Error{
		Op:   "write",
		Kind: KindInvalidLine,
		Message: fmt.Sprintf("invalid line (index 0): the partial line is %d bytes without a newline, longer "+
			"than the maximum of %d; nothing of this write was stored", n, w.j.MaxLineBytes()),
		LineIndex: 0,
	}
}

// Buffered is the length of the partial line waiting for its '\n'.
func (w *Writer) Buffered() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.partial)
}

// Flush appends the partial line, if there is one, as a line of its own. On error
// the partial line stays buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) == 0 {
		return nil
	}
	if _, err := w.j.appendLines([][]byte{w.partial}); err != nil {
		// (a Writer closed after its Appender said only "closed": an outside tester)
		return fmt.Errorf("%w (the partial line of %d bytes is still buffered: not stored)", err, len(w.partial))
	}
	w.partial = w.partial[:0]
	return nil
}

// Close flushes the partial line. It does not close the journal.
func (w *Writer) Close() error {
	return w.Flush()
}
