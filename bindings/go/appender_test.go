package tributary

// Tests of Appender (background commit), and of Writer and SlogHandler over one.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// never: only Flush (or a full queue) makes the committer commit.
const never = 2 * time.Hour

func TestAppenderPushFlushInOrder(t *testing.T) {
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: never})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for i := range 1000 {
		if q, err := a.PushString(fmt.Sprint("line ", i)); err != nil || !q {
			t.Fatalf("push %d: %v %v", i, q, err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err := a.Stats()
	if err != nil || s != (AppenderStats{Pushed: 1000, Committed: 1000, Commits: 1}) {
		t.Fatalf("stats %+v %v: want 1000 pushed and committed in one transaction", s, err)
	}
	// the window as measured: every line waited (its commit has an fsync)
	if w, err := a.DurableWait(0.99); err != nil || w <= 0 {
		t.Fatalf("DurableWait(0.99) = %v, %v: want a wait above 0", w, err)
	}
	_, err = a.DurableWait(1.5)
	wantKind(t, err, KindInvalidArgument)
	f.drain(t)
	got := targetLines(t, f.target)
	if len(got) != 1000 || got[0] != "line 0" || got[999] != "line 999" {
		t.Fatalf("target: %d lines, first %q", len(got), got[0])
	}
}

func TestAppenderDropWhenFullCounts(t *testing.T) {
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: never, MaxQueueBytes: 15, DropWhenFull: true})
	if err != nil {
		t.Fatal(err)
	}
	if q, err := a.PushString("0123456789"); !q || err != nil {
		t.Fatalf("first push: %v %v", q, err)
	}
	if q, err := a.PushString("abcdefghij"); q || err != nil {
		t.Fatalf("second push into a full queue: queued %v, err %v; want dropped", q, err)
	}
	if s, _ := a.Stats(); s.Dropped != 1 {
		t.Fatalf("stats %+v: want 1 dropped", s)
	}
	if err := a.Close(); err != nil { // flushes
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.PushString("late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after close: %v, want ErrClosed", err)
	}
	f.drain(t)
	if got := targetLines(t, f.target); strings.Join(got, ",") != "0123456789" {
		t.Fatalf("target %q", got)
	}
}

func TestAppenderRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	for _, o := range []AppenderOptions{{Window: -1}, {Window: time.Nanosecond}, {MaxQueueBytes: -1}} {
		if _, err := OpenAppender(f.journalPath("bad"), &o); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%+v: %v, want ErrInvalidArgument", o, err)
		}
	}
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{JournalOptions: JournalOptions{MaxLineBytes: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, line := range []string{"a\nb", "too long"} {
		if _, err := a.PushString(line); !errors.Is(err, ErrInvalidLine) {
			t.Errorf("push %q: %v, want ErrInvalidLine", line, err)
		}
	}
	// Through a Writer: a Write with one bad line queues none of its lines.
	w := NewWriter(a)
	if _, err := w.Write([]byte("ok\ntoolong\n")); !errors.Is(err, ErrInvalidLine) {
		t.Fatalf("write: %v, want ErrInvalidLine", err)
	}
	if s, _ := a.Stats(); s.Pushed != 0 {
		t.Fatalf("stats %+v: nothing may be queued", s)
	}
}

// A journal removed (or retired) under an Appender: its next commit is refused
// (nothing stored) and the Appender opens the name again and commits there (a
// logging process kept failing every record after a retirement).
func TestAppenderJournalRemovedIsOpenedAgainByItsPath(t *testing.T) {
	f := newFixture(t)
	path := f.journalPath("a")
	a, err := OpenAppender(path, &AppenderOptions{Window: never})
	if err != nil {
		t.Fatal(err)
	}
	a.PushString("gone with the files")
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	a.PushString("after")
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(path + s)
	}
	if err := a.Flush(); err != nil {
		t.Fatalf("flush after the journal was removed: %v", err)
	}
	a.PushString("more")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{path}}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(targetLines(t, f.target)); got != "[after more]" {
		t.Fatalf("target = %s", got)
	}
}

func TestSlogAndWriterOverAnAppender(t *testing.T) {
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(NewSlogHandler(a, nil))
	logger.Info("hello", "n", 1, "text", "two\nlines")
	w := NewWriter(a)
	fmt.Fprintf(w, "plain %d\npartial", 2)
	w.Close() // pushes the partial line
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	got := targetLines(t, f.target)
	if len(got) != 3 || !strings.Contains(got[0], `"msg":"hello"`) || !strings.Contains(got[0], `two\nlines`) ||
		got[1] != "plain 2" || got[2] != "partial" {
		t.Fatalf("target %q", got)
	}
}

// Logging throughput: slog's JSON handler into a plain file (not durable), into a
// Journal (durable on return) and into an Appender (background commit), side by side
// (go test -bench Slog -run ^$). Each op is one record; run in parallel goroutines.
func BenchmarkSlogFileNotDurable(b *testing.B) {
	file, err := os.Create(b.TempDir() + "/plain.log")
	if err != nil {
		b.Fatal(err)
	}
	defer file.Close()
	benchSlog(b, slog.New(slog.NewJSONHandler(file, nil)), nil)
}

func BenchmarkSlogJournalDurable(b *testing.B) {
	j, err := OpenJournal(b.TempDir()+"/a.journal", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	benchSlog(b, slog.New(NewSlogHandler(j, nil)), nil)
}

func BenchmarkSlogAppender(b *testing.B) {
	a, err := OpenAppender(b.TempDir()+"/a.journal", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	benchSlog(b, slog.New(NewSlogHandler(a, nil)), a.Flush) // counts only durable records
}

func benchSlog(b *testing.B, logger *slog.Logger, flush func() error) {
	msg := strings.Repeat("x", 60)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			logger.Info(msg, "k", 1)
		}
	})
	if flush != nil {
		if err := flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// A Close that gives up on lines says how many, in its error (an outside tester
// could not tell: Stats fails once the Appender is closed). The journal holds 25
// bytes and nothing drains it: 2 of 5 lines of 10 bytes are stored, 3 lost at Close,
// counted once whether pushed or gathered (a Writer's lines, gathered first).
func TestAppenderCloseSaysHowManyLinesItGaveUpOn(t *testing.T) {
	f := newFixture(t)
	for _, via := range []string{"push", "writer", "writer, small queue"} {
		opts := &AppenderOptions{Window: never, JournalOptions: JournalOptions{MaxBacklogBytes: 25}}
		if via == "writer, small queue" {
			// the close's hand-over itself stops part way (the queue takes 2 lines at a
			// time): some lines are lost gathered, the rest queued — two errors, joined
			opts.MaxQueueBytes = 20
		}
		path := f.journalPath(strings.ReplaceAll(via, ", ", "-"))
		a, err := OpenAppender(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		w := NewWriter(a)
		for i := range 5 {
			if via == "push" {
				_, err = a.PushString(fmt.Sprintf("%s-%04d", via, i))
			} else {
				_, err = fmt.Fprintf(w, "%s-%02d\n", via[:6], i)
			}
			if err != nil {
				t.Fatalf("%s %d: %v", via, i, err)
			}
		}
		if via != "push" {
			if _, err := io.WriteString(w, "partial"); err != nil {
				t.Fatal(err)
			}
		}
		err = a.Close()
		if !errors.Is(err, ErrJournalFull) || RecordsNotStored(err) != 3 {
			t.Fatalf("%s: Close = %v (RecordsNotStored %d), want journal full and 3", via, err, RecordsNotStored(err))
		}
		if via != "push" {
			err := w.Close()
			if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "partial line of 7 bytes is still buffered") {
				t.Fatalf("Writer.Close after the Appender's: %v", err)
			}
		}
		r, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{path}})
		if err != nil || r.Lines != 2 {
			t.Fatalf("%s: drained %+v, %v: want the 2 lines that fit", via, r, err)
		}
	}
	// Through slog: each lost record counted once, in Failed() (refused while logging)
	// or in RecordsNotStored (given up at Close) — the gathered ones were in both.
	path := f.journalPath("slog")
	a, err := OpenAppender(path, &AppenderOptions{
		Window: never, MaxQueueBytes: 120, JournalOptions: JournalOptions{MaxBacklogBytes: 150},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := NewSlogHandler(a, nil)
	logger := slog.New(h)
	for i := range 5 {
		logger.Info(fmt.Sprintf("r%d", i))
	}
	closeErr := a.Close()
	stored, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	if lost := h.Failed() + RecordsNotStored(closeErr); stored.Lines+lost != 5 || lost == 0 || stored.Lines == 0 {
		t.Fatalf("slog: %d stored, Failed %d, RecordsNotStored %d: want each of 5 records once", stored.Lines,
			h.Failed(), RecordsNotStored(closeErr))
	}
	if RecordsNotStored(nil) != 0 || RecordsNotStored(ErrClosed) != 0 {
		t.Fatal("RecordsNotStored of no error or another error: want 0")
	}
}
