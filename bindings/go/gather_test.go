package tributary

// Tests of the lines a SlogHandler or Writer gathers for an Appender (gather.go):
// push order, Flush's promise, the timer, drops and refusals.

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestGatheredLinesKeepPushOrderAndFlushIncludesThem(t *testing.T) {
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: never})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w := NewWriter(a)
	w.Write([]byte("gathered 1\n"))
	if _, err := a.PushString("pushed 2"); err != nil { // after "gathered 1", not before it
		t.Fatal(err)
	}
	w.Write([]byte("gathered 3\ngathered 4\n"))
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err := a.Stats() // (no hand-over of its own: Flush must have made it)
	if err != nil || s.Pushed != 4 || s.Committed != 4 {
		t.Fatalf("after Flush: %+v %v; want all 4 lines committed", s, err)
	}
	f.drain(t)
	if got := strings.Join(targetLines(t, f.target), ","); got != "gathered 1,pushed 2,gathered 3,gathered 4" {
		t.Fatalf("target %q", got)
	}
}

func TestGatheredLinesAreHandedOverWithinAQuarterOfTheWindow(t *testing.T) {
	f := newFixture(t)
	// the committer commits half a window after the oldest line (20 ms), if the timer
	// hands the line over (5 ms): no Flush, no Stats (both hand over themselves)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	slog.New(NewSlogHandler(a, nil)).Info("alone")
	waitFor(t, "the gathered record committed without a Flush", func() bool {
		s, err := a.Stats() // (no hand-over of its own: the timer must have made it)
		return err == nil && s.Committed == 1
	})
}

func TestAGatheredLineWaitsFromWhenItWasGathered(t *testing.T) {
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: never})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const held = 250 * time.Millisecond
	time.Sleep(held) // (no line can have been held longer than its appender is open)
	slog.New(NewSlogHandler(a, nil)).Info("held")
	a.g.mu.Lock()
	a.g.since = time.Now().Add(-held) // as if gathered that long ago
	a.g.mu.Unlock()
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	if w, err := a.DurableWait(1); err != nil || w < held {
		t.Fatalf("DurableWait(1) = %v, %v: leaves out the %v the line was gathered", w, err, held)
	}
}

func TestGatheredLinesDropPerLineWhenTheQueueIsFull(t *testing.T) {
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: never, MaxQueueBytes: 15, DropWhenFull: true})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(a)
	if n, err := w.Write([]byte("0123456789\nabcdefghij\nxyz\n")); n != 26 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err := a.Stats()
	if err != nil || s.Pushed != 2 || s.Dropped != 1 || s.Refused != 0 {
		t.Fatalf("stats %+v %v: want the 10-byte line dropped in the 15-byte queue, the 3-byte one queued", s, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("late\n")); !errors.Is(err, ErrClosed) {
		t.Fatalf("a write after Close: %v, want ErrClosed", err)
	}
	f.drain(t)
	if got := strings.Join(targetLines(t, f.target), ","); got != "0123456789,xyz" {
		t.Fatalf("target %q", got)
	}
}

func TestLinesAHandOverCouldNotQueueAreKeptAndHandedOverByALaterFlush(t *testing.T) {
	// A journal that fills up: the hand-overs wait for room and meet the committer's
	// "journal full" failures. The lines they could not queue stay gathered, in order;
	// Flush says so until a compactor makes room, and a Flush that returns nil has
	// stored every record logged before it. (They were dropped and only counted, so
	// 138 of 200 records were lost behind a nil Flush: an outside tester.)
	f := newFixture(t)
	journal := f.journalPath("a")
	a, err := OpenAppender(journal, &AppenderOptions{
		JournalOptions: JournalOptions{MaxBacklogBytes: 4000},
		Window:         20 * time.Millisecond,
		MaxQueueBytes:  1000, // a hand-over of more waits for room, and meets the failures
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := NewSlogHandler(a, nil)
	logger := slog.New(h)
	w := NewWriter(a)
	for i := range 200 {
		logger.Info("record", "n", i)
		if i == 100 {
			if _, err := w.Write([]byte("written between\n")); err != nil {
				t.Fatalf("a Writer's line was refused: %v", err)
			}
		}
	}
	failures := 0
	for {
		err := a.Flush()
		if err == nil {
			break
		}
		wantKind(t, err, KindJournalFull)
		if failures++; failures > 1000 {
			t.Fatalf("Flush still fails after %d drains: %v", failures, err)
		}
		f.drain(t) // room, as a compactor makes it
	}
	if failures == 0 {
		t.Fatal("the journal never filled: the test tests nothing")
	}
	if a.g.lines != 0 {
		t.Fatalf("%d lines still gathered after a Flush that returned nil", a.g.lines)
	}
	if s, _ := a.Stats(); s.Refused != 0 || h.Failed() != 0 {
		t.Fatalf("stats %+v, handler failed %d: nothing may be refused or failed", s, h.Failed())
	}
	f.drain(t)
	got := targetLines(t, f.target)
	if len(got) != 201 {
		t.Fatalf("%d lines in the target after a Flush that returned nil, want all 201", len(got))
	}
	for i, l := range got {
		want := fmt.Sprintf(`"n":%d}`, i)
		switch {
		case i == 101:
			want = "written between"
		case i > 101:
			want = fmt.Sprintf(`"n":%d}`, i-1)
		}
		if !strings.HasSuffix(l, want) {
			t.Fatalf("line %d is %q, want it to end with %q: not in logging order", i, l, want)
		}
	}
}

func TestAHandOverRetryingCannotFixIsCountedAndEveryLaterCallSaysSo(t *testing.T) {
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: never})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := NewSlogHandler(a, nil)
	logger := slog.New(h)
	logger.Info("one")
	logger.Info("two")
	// A hand-over the library refuses for good (invalid_argument: lines held longer
	// than the appender is open, which only this seam can make).
	a.g.mu.Lock()
	a.g.since = time.Now().Add(-time.Hour)
	a.g.mu.Unlock()
	wantKind(t, a.Flush(), KindInvalidArgument)
	if s, err := a.Stats(); err != nil || s.Refused != 2 || s.Pushed != 0 {
		t.Fatalf("stats %+v %v: want the 2 gathered records refused, none pushed", s, err)
	}
	if n := h.Failed(); n != 2 {
		t.Fatalf("handler Failed() = %d, want the 2 refused records", n)
	}
	logger.Info("three") // refused at once now, and counted
	if n := h.Failed(); n != 3 {
		t.Fatalf("handler Failed() = %d after a record logged past the error, want 3", n)
	}
	wantKind(t, a.Flush(), KindInvalidArgument)
	if _, err := NewWriter(a).Write([]byte("four\n")); err == nil {
		t.Fatal("a Writer's line after the error was taken")
	}
}

// helperSlogLogger logs through slog over an Appender (defaults: records gathered,
// window 10 ms) until killed, numbering its records; after every 50 it flushes and
// prints how many it logged: every record before that number is durable.
func helperSlogLogger() {
	a, err := OpenAppender(os.Getenv("TRIB_GO_JOURNAL"), nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	logger := slog.New(NewSlogHandler(a, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, at slog.Attr) slog.Attr {
			if at.Key == slog.TimeKey {
				return slog.Attr{} // (the record's number says all the test needs)
			}
			return at
		},
	}))
	for i := 0; ; i++ {
		logger.Info("record", "n", i)
		if (i+1)%50 == 0 {
			if err := a.Flush(); err != nil {
				fmt.Println("flush:", err)
				os.Exit(1)
			}
			fmt.Println(i + 1)
		}
	}
}

func TestSigkillLosesNoFlushedSlogRecordAndKeepsAPrefix(t *testing.T) {
	// A real process logging through slog over an Appender, killed with SIGKILL after
	// a flush it reported (and while it goes on logging): every record before that
	// flush survives, and what survives is a prefix of what it logged, in order, no
	// gap and no duplicate — the records it had gathered but not handed over are the
	// only ones a crash may take, with those the committer had not committed.
	for _, flushes := range []int{1, 7, 20} {
		f := newFixture(t)
		journal := f.journalPath("logger")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "TRIB_GO_HELPER=slog-logger", "TRIB_GO_JOURNAL="+journal)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		flushed := 0
		for range flushes {
			if !lines.Scan() {
				t.Fatalf("the logger stopped before its flush report: %v", lines.Err())
			}
			if flushed, err = strconv.Atoi(lines.Text()); err != nil {
				t.Fatalf("the logger said %q", lines.Text())
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		f.drain(t)
		got := targetLines(t, f.target)
		if len(got) < flushed {
			t.Fatalf("%d records were flushed, %d survived", flushed, len(got))
		}
		for i, l := range got {
			if want := fmt.Sprintf(`{"level":"INFO","msg":"record","n":%d}`, i); l != want {
				t.Fatalf("record %d of %d is %q, want %q: not a prefix of what was logged", i, len(got), l, want)
			}
		}
	}
}

func TestLoggingGoesOnWhileAHandOverIsInTheLibrary(t *testing.T) {
	// A hand-over can wait in the library (a full queue waiting for a commit, a
	// failing journal retried up to a second at a time): loggers must not queue
	// behind it one by one (an outside tester saw p99 10 s per call with 8
	// goroutines). Hold the hand-over lock as a hand-over stuck in the library would.
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: never})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	logger := slog.New(NewSlogHandler(a, nil))
	a.g.handing.Lock()
	done := make(chan struct{})
	go func() {
		for i := range 2000 { // ~120 KiB: past the 32 KiB that starts a hand-over
			logger.Info("record", "n", i)
		}
		close(done)
	}()
	await(t, done, "2000 records logged while a hand-over is in the library")
	a.g.handing.Unlock()
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	got := targetLines(t, f.target)
	if len(got) != 2000 || !strings.HasSuffix(got[1999], `"n":1999}`) {
		t.Fatalf("%d lines, last %q", len(got), got[len(got)-1])
	}
}

func TestWhileHandOversFailARecordPastMostIsRefusedAtOnce(t *testing.T) {
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{Window: never, MaxQueueBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w := NewWriter(a)
	// the last hand-over failed and is stuck retrying in the library
	a.g.handing.Lock()
	a.g.mu.Lock()
	a.g.failed = &Error{Op: "push", Kind: KindJournalFull, Message: "journal full (the test's)", LineIndex: -1}
	a.g.mu.Unlock()
	taken := 0
	for {
		_, err := fmt.Fprintf(w, "line %d\n", taken)
		if err != nil {
			wantKind(t, err, KindJournalFull)
			break
		}
		if taken++; taken > 100000 {
			t.Fatal("lines are still gathered far past MaxQueueBytes while hand-overs fail")
		}
	}
	if n := len(a.g.buf); n < gatherBytes || n > gatherBytes+100 {
		t.Fatalf("refused with %d bytes gathered, want just past %d", n, gatherBytes)
	}
	a.g.handing.Unlock()
	if err := a.Flush(); err != nil { // the journal is fine: the kept lines go
		t.Fatal(err)
	}
	f.drain(t)
	if got := targetLines(t, f.target); len(got) != taken || got[taken-1] != fmt.Sprintf("line %d", taken-1) {
		t.Fatalf("%d lines in the target, want the %d taken", len(got), taken)
	}
}

func TestKeptLinesAreRetriedWithoutAFlush(t *testing.T) {
	// A hand-over made by a writer (or Flush) fails — the journal fills while it waits
	// for room — after the gathering's own timer came and found a hand-over in
	// flight: a retry must still come, so that the lines reach the journal once a
	// compactor makes room, with no Flush (a logger that never flushes until it exits).
	f := newFixture(t)
	a, err := OpenAppender(f.journalPath("a"), &AppenderOptions{
		JournalOptions: JournalOptions{MaxBacklogBytes: 4000},
		Window:         40 * time.Millisecond,
		MaxQueueBytes:  1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var sb strings.Builder
	const n = 500
	for i := range n {
		fmt.Fprintf(&sb, "line %04d, ~20 KiB in all\n", i) // (under 32 KiB: gathered only)
	}
	a.g.handing.Lock() // a hand-over in flight: the timer's finds it so
	if _, err := NewWriter(a).Write([]byte(sb.String())); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * a.g.delay) // (the gathering's timer comes and goes meanwhile)
	// the hand-over in flight, made by "a writer": more than the 1,000-byte queue, so it
	// waits for room, and fails with the journal full
	wantKind(t, a.handOverHanding(), KindJournalFull)
	a.g.handing.Unlock()
	waitFor(t, "every line committed with no Flush, a compactor making room", func() bool {
		f.drain(t)
		s, err := a.Stats()
		return err == nil && s.Committed == n
	})
	f.drain(t)
	if got := targetLines(t, f.target); len(got) != n || got[n-1] != fmt.Sprintf("line %04d, ~20 KiB in all", n-1) {
		t.Fatalf("%d lines in the target, want %d in order", len(got), n)
	}
}
