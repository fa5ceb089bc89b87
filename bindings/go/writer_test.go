package tributary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var _ io.WriteCloser = (*Writer)(nil)
var _ io.StringWriter = (*Writer)(nil)
var _ slog.Handler = (*SlogHandler)(nil)

func TestWriter(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "w", &JournalOptions{MaxLineBytes: 32})
	w := NewWriter(j)
	write := func(s string) {
		t.Helper()
		if n, err := w.WriteString(s); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	write("one\n")
	write("two\nthr")         // a complete line and a partial one
	write("ee")               // still partial
	write("\nfour\n\nfive\n") // completes it; an empty line
	write("six")
	if w.Buffered() != 3 {
		t.Fatalf("Buffered = %d", w.Buffered())
	}
	if b, _ := j.Backlog(); b.Lines != 6 {
		t.Fatalf("backlog %d lines before Flush, want 6", b.Lines)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil { // nothing left: no empty line
		t.Fatal(err)
	}
	write("seven")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// A refused line: nothing of the Write is stored or buffered.
	write("partial ")
	n, err := w.Write([]byte("ok\n" + strings.Repeat("x", 40) + "\nok\n"))
	if n != 0 {
		t.Fatalf("a refused Write returned n = %d", n)
	}
	if e := wantKind(t, err, KindInvalidLine); e.LineIndex != 1 {
		t.Fatalf("LineIndex %d", e.LineIndex)
	}
	if w.Buffered() != len("partial ") {
		t.Fatalf("Buffered after a refused Write = %d", w.Buffered())
	}
	// A partial line that outgrows the maximum is refused at once.
	n, err = w.Write([]byte(strings.Repeat("y", 40)))
	if n != 0 {
		t.Fatalf("n = %d", n)
	}
	wantKind(t, err, KindInvalidLine)
	write("done\n")

	f.drain(t)
	got := strings.Join(targetLines(t, f.target), "|")
	if want := "one|two|three|four||five|six|seven|partial done"; got != want {
		t.Fatalf("target = %q, want %q", got, want)
	}

	// Errors of the journal come through, e.g. a closed journal.
	j.Close()
	if _, err := w.Write([]byte("late\n")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write to a closed journal: %v", err)
	}
}

// The standard library's log package writes one line per call through a Writer.
func TestWriterWithLogPackage(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "log", nil)
	logger := log.New(NewWriter(j), "app: ", 0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				logger.Printf("goroutine %d message %d", g, i)
			}
		}()
	}
	wg.Wait()
	f.drain(t)
	got := targetLines(t, f.target)
	if len(got) != 40 {
		t.Fatalf("%d lines", len(got))
	}
	for _, l := range got {
		if !strings.HasPrefix(l, "app: goroutine ") {
			t.Fatalf("line %q", l)
		}
	}
}

type multiLine struct{}

// MarshalJSON returns indented JSON: the handler must still write one line.
func (multiLine) MarshalJSON() ([]byte, error) { return []byte("{\n  \"a\": 1\n}"), nil }

func TestSlogHandler(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "slog", nil)
	h := NewSlogHandler(j, &slog.HandlerOptions{Level: slog.LevelInfo})
	logger := slog.New(h)
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("debug enabled at level info")
	}
	logger.Debug("not logged")
	logger.Info("hello\nworld", "path", "/index.html", "status", 200)
	logger.With("host", "web1").WithGroup("req").Warn("slow", "ms", 1234, "note", "two\nlines")
	logger.Error("odd", "value", multiLine{}, "err", errors.New("boom\nbang"))

	// Concurrent records are all written, each on its own line.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := logger.With("g", g)
			for i := range 10 {
				l.Info("tick", "i", i)
			}
		}()
	}
	wg.Wait()

	f.drain(t)
	lines := targetLines(t, f.target)
	if len(lines) != 3+80 {
		t.Fatalf("%d lines, want 83", len(lines))
	}
	var recs []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		recs = append(recs, m)
	}
	if recs[0]["msg"] != "hello\nworld" || recs[0]["status"] != 200.0 || recs[0]["level"] != "INFO" {
		t.Fatalf("record 0: %v", recs[0])
	}
	if _, err := time.Parse(time.RFC3339Nano, recs[0]["time"].(string)); err != nil {
		t.Fatalf("time: %v", err)
	}
	req, _ := recs[1]["req"].(map[string]any)
	if recs[1]["host"] != "web1" || req == nil || req["ms"] != 1234.0 || req["note"] != "two\nlines" {
		t.Fatalf("record 1: %v", recs[1])
	}
	if v, _ := recs[2]["value"].(map[string]any); v == nil || v["a"] != 1.0 || recs[2]["err"] != "boom\nbang" {
		t.Fatalf("record 2: %v", recs[2])
	}
	ticks := map[string]bool{}
	for _, r := range recs[3:] {
		ticks[fmt.Sprint(r["g"], "/", r["i"])] = true
	}
	if len(ticks) != 80 {
		t.Fatalf("%d distinct concurrent records, want 80", len(ticks))
	}

	// A failed append is the handler's error.
	j.Close()
	if err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "late", 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Handle on a closed journal: %v", err)
	}
}

// A Writer over an Appender closed by another goroutine mid-Write said "0, err:
// nothing of p stored" although the lines pushed before the close were queued and
// then committed: a caller that retried wrote them twice (found by an outside
// tester: 2,526 lines of "failed" Writes in the target over 300 trials). Whatever the
// interleaving, exactly the lines of p[:n] that Write reports are stored.
func TestWriterOverAnAppenderClosedMidwaySaysWhatItQueued(t *testing.T) {
	f := newFixture(t)
	type write struct {
		p []byte
		n int
	}
	var writes []write
	for trial := 0; trial < 40; trial++ {
		a, err := OpenAppender(f.journalPath("a"), nil)
		if err != nil {
			t.Fatal(err)
		}
		w := NewWriter(a)
		started := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				var sb strings.Builder
				for k := 0; k < 50; k++ {
					fmt.Fprintf(&sb, "t%d-w%d-l%d\n", trial, i, k)
				}
				p := []byte(sb.String())
				n, err := w.Write(p)
				writes = append(writes, write{p, n})
				if i == 0 {
					close(started)
				}
				if err != nil {
					if n >= len(p) {
						t.Errorf("Write returned n=%d = len(p) with an error: %v", n, err)
					}
					return
				}
			}
		}()
		<-started
		for k := 0; k < trial%5; k++ {
			runtime.Gosched()
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	f.drain(t)
	got := map[string]int{}
	for _, l := range targetLines(t, f.target) {
		got[string(l)]++
	}
	for _, wr := range writes {
		end := 0
		for _, l := range strings.SplitAfter(string(wr.p), "\n") {
			if l == "" {
				continue
			}
			end += len(l)
			line := strings.TrimSuffix(l, "\n")
			want := 0
			if end <= wr.n {
				want = 1
			}
			if got[line] != want {
				t.Fatalf("line %q: Write reported n=%d of %d, the target has it %d time(s)", line, wr.n, len(wr.p), got[line])
			}
		}
	}
}

// A journal retired under a logging process (`compact --retire-idle`, `tributary
// retire`): every later record was lost, and a SlogHandler's Handle errors are
// discarded by slog.Logger (an outside tester). Over a Journal or an Appender, the
// handler logs on into the journal opened again at the path.
func TestSlogHandlerLogsOnAfterItsJournalIsRetired(t *testing.T) {
	for _, background := range []bool{false, true} {
		f := newFixture(t)
		path := f.journalPath("app")
		var sink LineSink
		var closeSink func() error
		if background {
			a, err := OpenAppender(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			sink, closeSink = a, a.Close
		} else {
			j, err := OpenJournal(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			sink, closeSink = j, j.Close
		}
		logger := slog.New(NewSlogHandler(sink, nil))
		logger.Info("before")
		if a, ok := sink.(*Appender); ok {
			if err := a.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := Retire(context.Background(), f.target, DrainOptions{Journals: []string{path}}); err != nil || n != 1 {
			t.Fatalf("background=%v: Retire = %d, %v", background, n, err)
		}
		logger.Info("after")
		if err := closeSink(); err != nil {
			t.Fatalf("background=%v: close: %v", background, err)
		}
		if _, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{path}}); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(targetLines(t, f.target), "|")
		if !strings.Contains(got, `"msg":"before"`) || !strings.Contains(got, `"msg":"after"`) {
			t.Fatalf("background=%v: target = %s", background, got)
		}
	}
}

// A record longer than MaxLineBytes is refused by Handle, whose error slog.Logger
// discards: it was dropped without a trace (an outside tester). Failed counts it,
// across the handlers WithAttrs makes, over a Journal and over an Appender.
func TestSlogHandlerCountsTheRecordsItCouldNotHandOver(t *testing.T) {
	for _, background := range []bool{false, true} {
		f := newFixture(t)
		path := f.journalPath("app")
		var sink LineSink
		if background {
			a, err := OpenAppender(path, &AppenderOptions{JournalOptions: JournalOptions{MaxLineBytes: 200}})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			sink = a
		} else {
			j, err := OpenJournal(path, &JournalOptions{MaxLineBytes: 200})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			sink = j
		}
		h := NewSlogHandler(sink, nil)
		logger := slog.New(h)
		logger.Info("short")
		logger.With("k", "v").Info(strings.Repeat("x", 300))
		logger.Info(strings.Repeat("y", 300))
		if got := h.Failed(); got != 2 {
			t.Fatalf("background=%v: Failed() = %d, want 2", background, got)
		}
	}
}
