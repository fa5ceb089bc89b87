package tributary

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

func TestReaderBeforeFirstDrain(t *testing.T) {
	f := newBareFixture(t)
	// A target that was not even created yet has no committed lines: the reader
	// waits (and creates nothing).
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok, err := r.TryNext(); ok || err != nil {
		t.Fatalf("TryNext on a fresh target: %v, %v", ok, err)
	}
	if _, err := os.Stat(sidecar(f.target)); !os.IsNotExist(err) {
		t.Fatalf("a reader created the sidecar: %v", err)
	}
	j := f.openJournal(t, "j", nil)
	j.AppendString("first")
	// Next waits (in a goroutine) while the target does not exist; once it is inside
	// Next, the target is created and drained, and Next returns the line.
	type result struct {
		line []byte
		err  error
	}
	next := make(chan result, 1)
	go func() {
		line, err := r.Next(context.Background())
		next <- result{line, err}
	}()
	waitInside(t, "(*Reader).Next")
	f.init(t)
	f.drain(t)
	res := await(t, next, "Next")
	if res.err != nil || string(res.line) != "first" {
		t.Fatalf("Next = %q, %v", res.line, res.err)
	}
}

func TestReaderNextHonoursContext(t *testing.T) {
	f := newFixture(t)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// A deadline: Next gives up with DeadlineExceeded, not before the deadline. (No
	// upper bound: a Next that ignored its deadline would hang, and the hang guard
	// reports it.)
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	done := make(chan error, 1)
	go func() { _, err := r.Next(ctx); done <- err }()
	if err := await(t, done, "Next with a 250ms deadline"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past the deadline: %v", err)
	}
	if now := time.Now(); now.Before(deadline) {
		t.Fatalf("Next gave up %v before its deadline", deadline.Sub(now))
	}

	// A cancellation while Next waits (it is inside Next when the context is
	// cancelled) ends it with Canceled.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { _, err := r.Next(ctx); done <- err }()
	waitInside(t, "(*Reader).Next")
	cancel()
	if err := await(t, done, "Next after cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
	if r.Offset() != 0 {
		t.Fatalf("Offset moved to %d", r.Offset())
	}
}

// A Lines whose ctx reaches its deadline just stops: no error Line, Err nil. Before,
// nextCtx's own clock check returned DeadlineExceeded before ctx's timer fired, and
// follow took it for a read failure (an outside tester: 172 of 200 such calls).
func TestLinesEndingAtItsDeadlineIsNotAnError(t *testing.T) {
	f := newFixture(t)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	failed := 0
	for i := range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i%5)*time.Millisecond)
		for l := range r.Lines(ctx) {
			if l.Err != nil {
				failed++
			}
		}
		cancel()
		if err := r.Err(); err != nil {
			t.Fatalf("Err after a Lines ended by its deadline: %v", err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 100 Lines ended by their deadline delivered an error line", failed)
	}
}

// Lines follows the target as drains commit more; offsets are cursors.
func TestReaderLinesFollows(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := r.Lines(ctx)

	// While Lines runs, the reader belongs to it.
	if _, err := r.Next(ctx); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Next during Lines: %v", err)
	}
	second := r.Lines(ctx)
	if l, ok := <-second; !ok || !errors.Is(l.Err, ErrInvalidArgument) {
		t.Fatalf("a second Lines: %+v", l)
	}
	if _, ok := <-second; ok {
		t.Fatal("the second Lines channel is not closed")
	}

	const total = 30
	// The producer reports its errors on a channel (it must not call t.Fatal), and
	// the test waits for it to finish before it ends (its last drain may still run
	// when the reader has every line).
	produced := make(chan error, 1)
	go func() {
		produced <- func() error {
			for i := range total {
				if _, err := j.AppendString(fmt.Sprintf("line %d", i)); err != nil {
					return err
				}
				if i%7 == 0 {
					if _, err := Drain(context.Background(), f.target, DrainOptions{Spool: f.spool}); err != nil {
						return err
					}
				}
			}
			_, err := Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
			return err
		}()
	}()
	var offsets []int64
	producing := produced // nil once the producer has returned
	for i := range total {
		var l Line
		for received := false; !received; {
			select {
			case l = <-ch:
				received = true
			case err := <-producing:
				if err != nil {
					t.Fatalf("producer: %v", err)
				}
				producing = nil
			case <-time.After(hangGuard):
				t.Fatalf("line %d never came", i)
			}
		}
		if l.Err != nil {
			t.Fatal(l.Err)
		}
		if want := fmt.Sprintf("line %d", i); string(l.Bytes) != want {
			t.Fatalf("got %q, want %q", l.Bytes, want)
		}
		offsets = append(offsets, l.Offset)
	}
	if producing != nil {
		if err := await(t, producing, "the producer"); err != nil {
			t.Fatalf("producer: %v", err)
		}
	}
	cancel()
	for l := range ch {
		t.Fatalf("a line after cancel: %+v", l)
	}
	if r.Err() != nil {
		t.Fatalf("Err after cancel: %v", r.Err())
	}
	if r.Offset() != offsets[total-1] {
		t.Fatalf("Offset %d after the channel closed, want %d (just after the last line delivered)",
			r.Offset(), offsets[total-1])
	}
	// Reopening at a delivered offset continues after that line.
	r2, err := OpenReader(f.target, offsets[9])
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if l, ok, err := r2.TryNext(); err != nil || !ok || string(l) != "line 10" {
		t.Fatalf("reopened: %q %v %v", l, ok, err)
	}
}

// A line read but not delivered when ctx ends is given back: following again
// delivers it.
func TestReaderLinesGivesBackUndelivered(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	for i := range 5 {
		j.AppendString(fmt.Sprint(i))
	}
	f.drain(t)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ch := r.Lines(ctx)
	first := <-ch
	// Let the goroutine read line "1" and block on delivering it, then stop.
	waitFor(t, "the reader to read ahead", func() bool { return r.Offset() > first.Offset })
	cancel()
	for range ch {
	}
	if r.Offset() != first.Offset {
		t.Fatalf("Offset %d after cancel, want %d", r.Offset(), first.Offset)
	}
	var got []string
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	for l := range r.Lines(ctx2) {
		got = append(got, string(l.Bytes))
		if len(got) == 4 {
			cancel2()
		}
	}
	if fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("following again: %q", got)
	}
}

func TestReaderLinesTerminalError(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("first line")
	f.drain(t)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if l, ok, err := r.TryNext(); !ok || err != nil || string(l) != "first line" {
		t.Fatalf("TryNext = %q, %v, %v", l, ok, err)
	}
	// More is committed, then someone truncates the target behind tributary's back.
	j.AppendString("second line")
	f.drain(t)
	if err := os.Truncate(f.target, 3); err != nil {
		t.Fatal(err)
	}
	var values []Line
	for l := range r.Lines(context.Background()) {
		values = append(values, l)
	}
	if len(values) != 1 || values[0].Bytes != nil || values[0].Offset != r.Offset() {
		t.Fatalf("after truncation: %+v", values)
	}
	wantKind(t, values[0].Err, KindTargetTruncated)
	if !errors.Is(r.Err(), ErrTargetTruncated) {
		t.Fatalf("Err() = %v", r.Err())
	}
}

func TestReaderCloseStopsLines(t *testing.T) {
	f := newFixture(t)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := r.Lines(context.Background())
	// Close while Lines waits for lines (its goroutine is inside the wait).
	waitInside(t, "(*Reader).nextCtx")
	r.Close()
	select {
	case l, ok := <-ch:
		if ok {
			t.Fatalf("a value after Close: %+v", l)
		}
	case <-time.After(hangGuard):
		t.Fatal("Close did not stop Lines")
	}
	if r.Err() != nil {
		t.Fatalf("Err after Close: %v", r.Err())
	}
}
