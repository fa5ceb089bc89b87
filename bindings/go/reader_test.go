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
	go func() {
		time.Sleep(150 * time.Millisecond)
		f.init(t)
		f.drain(t)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	line, err := r.Next(ctx)
	if err != nil || string(line) != "first" {
		t.Fatalf("Next = %q, %v", line, err)
	}
}

func TestReaderNextHonoursContext(t *testing.T) {
	f := newFixture(t)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if _, err := r.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past the deadline: %v", err)
	}
	if d := time.Since(start); d < 240*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Next with a 250ms deadline returned after %v", d)
	}

	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(150 * time.Millisecond); cancel() }()
	start = time.Now()
	if _, err := r.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
	if d := time.Since(start); d > 150*time.Millisecond+pollSlice+time.Second {
		t.Fatalf("cancellation noticed after %v", d)
	}
	if r.Offset() != 0 {
		t.Fatalf("Offset moved to %d", r.Offset())
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
	go func() {
		for i := range total {
			j.AppendString(fmt.Sprintf("line %d", i))
			if i%7 == 0 {
				f.drain(t)
			}
		}
		f.drain(t)
	}()
	var offsets []int64
	for i := range total {
		select {
		case l := <-ch:
			if l.Err != nil {
				t.Fatal(l.Err)
			}
			if want := fmt.Sprintf("line %d", i); string(l.Bytes) != want {
				t.Fatalf("got %q, want %q", l.Bytes, want)
			}
			offsets = append(offsets, l.Offset)
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for line %d", i)
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
	time.Sleep(50 * time.Millisecond)
	r.Close()
	select {
	case l, ok := <-ch:
		if ok {
			t.Fatalf("a value after Close: %+v", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop Lines")
	}
	if r.Err() != nil {
		t.Fatalf("Err after Close: %v", r.Err())
	}
}
