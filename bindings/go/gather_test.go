package tributary

// Tests of the lines a SlogHandler or Writer gathers for an Appender (gather.go):
// push order, Flush's promise, the timer, drops and refusals.

import (
	"errors"
	"log/slog"
	"strings"
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
