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
	s, err := a.stats() // (no hand-over of its own: Flush must have made it)
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
		s, err := a.stats()
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

func TestAHandOverThatFailsIsCountedAndReturnedByTheNextFlush(t *testing.T) {
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
	// A hand-over the library refuses: lines held longer than the appender is open.
	a.g.mu.Lock()
	a.g.since = time.Now().Add(-time.Hour)
	a.g.mu.Unlock()
	if s, err := a.Stats(); err != nil || s.Refused != 2 || s.Pushed != 0 {
		t.Fatalf("stats %+v %v: want the 2 gathered records refused, none pushed", s, err)
	}
	if n := h.Failed(); n != 2 {
		t.Fatalf("handler Failed() = %d, want the 2 refused records", n)
	}
	wantKind(t, a.Flush(), KindInvalidArgument)
	if err := a.Flush(); err != nil {
		t.Fatalf("a second Flush: %v (the hand-over's error is returned once)", err)
	}
	logger.Info("three") // gathering goes on
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	if got := targetLines(t, f.target); len(got) != 1 || !strings.Contains(got[0], `"msg":"three"`) {
		t.Fatalf("target %q", got)
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
