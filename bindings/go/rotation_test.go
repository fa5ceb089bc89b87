package tributary

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// genLine is one committed line of a target with the cursor just after it.
type genLine struct {
	text  string
	after Cursor
}

// committedLines reads every kept generation of target, oldest first, with the cursor
// after each line, as a reader opened at CursorStart should deliver them.
func committedLines(t testing.TB, target string) []genLine {
	t.Helper()
	st, err := Status(target, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []genLine
	first := st.Generation - uint64(st.RotatedGenerations)
	for g := first; g <= st.Generation; g++ {
		path := target
		if g < st.Generation {
			path = fmt.Sprintf("%s.%d", target, g)
		}
		var off int64
		for _, l := range targetLines(t, path) {
			off += int64(len(l)) + 1
			out = append(out, genLine{l, Cursor{Generation: g, Offset: off, TargetID: st.TargetID}})
		}
	}
	return out
}

func appendN(t testing.TB, j *Journal, prefix string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := j.AppendString(fmt.Sprintf("%s %d", prefix, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func drainWith(t testing.TB, target string, opts DrainOptions) DrainReport {
	t.Helper()
	r, err := Drain(context.Background(), target, opts)
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	return r
}

func TestCursorStringParse(t *testing.T) {
	for _, c := range []Cursor{CursorStart, {Generation: 1}, {Generation: 3, Offset: 1024},
		{Generation: 1<<64 - 1, Offset: 1<<63 - 1}} {
		got, err := ParseCursor(c.String())
		if err != nil || got != c {
			t.Fatalf("ParseCursor(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	if s := (Cursor{Generation: 2, Offset: 17}).String(); s != "2:17" {
		t.Fatalf("String = %q", s)
	}
	for _, bad := range []string{"", "3", "3:", ":4", "a:1", "1:-1", "-1:0", "1:2:3", " 1:2"} {
		if _, err := ParseCursor(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("ParseCursor(%q): %v", bad, err)
		}
	}
}

// A target rotated many times by repeated drains (small RotateBytes and rounds) while
// producers append and M readers follow it from the start with Lines: every reader
// receives every line exactly once, in order, each with the cursor after it.
func TestRotationFollowers(t *testing.T) {
	const producers, perProducer, readers = 3, 200, 4
	f := newFixture(t)
	total := producers * perProducer
	var names []string
	for p := range producers {
		names = append(names, fmt.Sprintf("p%d", p))
	}
	opts := DrainOptions{Spool: f.spool, RotateBytes: 512, MaxRoundBytes: 256, MaxRoundTime: 20 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	type result struct {
		who   string
		lines []Line
		err   error
	}
	results := make(chan result, readers+1)
	startReader := func(who string) {
		r, err := OpenReaderAt(f.target, CursorStart)
		if err != nil {
			results <- result{who: who, err: err}
			return
		}
		go func() {
			defer r.Close()
			rctx, rcancel := context.WithCancel(ctx)
			defer rcancel()
			var got []Line
			for l := range r.Lines(rctx) {
				if l.Err != nil {
					results <- result{who: who, lines: got, err: l.Err}
					return
				}
				got = append(got, l)
				if len(got) == total {
					rcancel()
				}
			}
			if len(got) == total && r.Cursor() != got[total-1].Cursor {
				results <- result{who: who, err: fmt.Errorf("Cursor %v after Lines, want %v", r.Cursor(),
					got[total-1].Cursor)}
				return
			}
			// Anything more would be a duplicate.
			for {
				l, ok, err := r.TryNext()
				if err != nil || !ok {
					results <- result{who: who, lines: got, err: err}
					return
				}
				got = append(got, Line{Bytes: l, Cursor: r.Cursor()})
			}
		}()
	}
	// The readers start before the target exists.
	for m := range readers {
		startReader(fmt.Sprintf("reader%d", m))
	}

	var producing sync.WaitGroup
	for p := range producers {
		j := f.openJournal(t, names[p], nil)
		producing.Add(1)
		go func() {
			defer producing.Done()
			for i := range perProducer {
				if _, err := j.AppendString(fmt.Sprintf("%s %d", names[p], i)); err != nil {
					t.Errorf("%s: %v", names[p], err)
					return
				}
				if i%20 == 19 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	producersDone := make(chan struct{})
	go func() { producing.Wait(); close(producersDone) }()

	var rotations uint64
	lateStarted := false
	for done := false; !done; {
		select {
		case <-producersDone:
			done = true
		default:
		}
		r, err := Drain(ctx, f.target, opts)
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
		rotations += r.Rotations
		if !lateStarted && rotations >= 3 {
			lateStarted = true // a reader that starts after rotations still reads from generation 1
			startReader("late reader")
		}
		time.Sleep(3 * time.Millisecond)
	}
	// Everything is committed now (the last drain started after the producers ended).
	if !lateStarted {
		startReader("late reader")
	}

	v := mustConsistent(t, f.target)
	t.Logf("%d lines, %d rotations, current generation %d", total, rotations, v.Generation)
	if rotations < 5 || v.Generation != rotations+1 || v.RotatedGenerations != int(rotations) {
		t.Fatalf("%d rotations, Verify: generation %d, %d rotated generations; want >= 5 rotations, generation "+
			"rotations+1, all kept", rotations, v.Generation, v.RotatedGenerations)
	}
	want := committedLines(t, f.target)
	var texts []string
	for _, l := range want {
		texts = append(texts, l.text)
	}
	checkExactlyOnce(t, "the generations", texts, names, perProducer)

	for range readers + 1 {
		var res result
		select {
		case res = <-results:
		case <-ctx.Done():
			t.Fatal("timed out waiting for the readers")
		}
		if res.err != nil {
			t.Fatalf("%s: %v (after %d lines)", res.who, res.err, len(res.lines))
		}
		if len(res.lines) != len(want) {
			t.Fatalf("%s: %d lines, want %d", res.who, len(res.lines), len(want))
		}
		for i, l := range res.lines {
			// After the last line of a generation that was already rotated out when it
			// was read, the cursor has moved on to the start of the next generation.
			endOfGen := i+1 < len(want) && want[i+1].after.Generation > want[i].after.Generation
			movedOn := endOfGen && l.Cursor == Cursor{Generation: want[i].after.Generation + 1, TargetID: want[i].after.TargetID}
			if string(l.Bytes) != want[i].text || (l.Cursor != want[i].after && !movedOn) || l.Offset != l.Cursor.Offset {
				t.Fatalf("%s: line %d is %q with cursor %v (offset %d); want %q with cursor %v", res.who, i,
					l.Bytes, l.Cursor, l.Offset, want[i].text, want[i].after)
			}
		}
	}
}

// A reader stopped mid-way and reopened at its saved cursor continues without loss or
// repeat, across rotations; a line read ahead across a generation boundary is given
// back when Lines stops.
func TestReaderResumeAcrossRotation(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	opts := DrainOptions{Spool: f.spool, RotateLines: 10}
	appendN(t, j, "line", 0, 10)
	if r := drainWith(t, f.target, opts); r.Rotations != 0 || r.Lines != 10 {
		t.Fatalf("first drain: %+v", r)
	}

	r, err := OpenReaderAt(f.target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	if c := pos(r.Cursor()); c != (Cursor{Generation: 1}) {
		t.Fatalf("Cursor at CursorStart = %v, want 1:0", c)
	}
	for i := range 4 {
		if l, ok, err := r.TryNext(); err != nil || !ok || string(l) != fmt.Sprintf("line %d", i) {
			t.Fatalf("TryNext %d = %q, %v, %v", i, l, ok, err)
		}
	}
	saved := r.Cursor().String() // as a consumer would persist it
	r.Close()

	// Generation 1 is full: the next drain rotates it before writing.
	appendN(t, j, "line", 10, 20)
	if rep := drainWith(t, f.target, opts); rep.Rotations != 1 || rep.Lines != 10 {
		t.Fatalf("second drain: %+v", rep)
	}
	if _, err := os.Stat(f.target + ".1"); err != nil {
		t.Fatalf("generation 1 was not rotated to %s.1: %v", f.target, err)
	}

	c, err := ParseCursor(saved)
	if err != nil {
		t.Fatal(err)
	}
	r, err = OpenReaderAt(f.target, c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	follow, stop := context.WithCancel(ctx)
	var last Line
	next := 4
	for l := range r.Lines(follow) {
		if l.Err != nil {
			t.Fatal(l.Err)
		}
		if want := fmt.Sprintf("line %d", next); string(l.Bytes) != want {
			t.Fatalf("resumed: got %q, want %q", l.Bytes, want)
		}
		next++
		last = l
		if next == 10 {
			// The last line of generation 1: let the reader read ahead into
			// generation 2, then stop.
			waitFor(t, "the reader to read ahead into generation 2",
				func() bool { return r.Cursor().Generation == 2 })
			stop()
		}
	}
	stop()
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	// Generation 1 was rotated out before it was read: after its last line the cursor
	// is already the start of generation 2 (so it stays valid once retention removes 1).
	if start2 := (Cursor{Generation: 2}); pos(last.Cursor) != start2 || pos(r.Cursor()) != start2 {
		t.Fatalf("after line 9: Line.Cursor %v, Reader.Cursor %v; want both %v (past the end of generation 1)",
			last.Cursor, r.Cursor(), start2)
	}
	saved = r.Cursor().String()
	// The line read ahead was given back: the same reader goes on with line 10.
	if l, ok, err := r.TryNext(); err != nil || !ok || string(l) != "line 10" || r.Cursor().Generation != 2 {
		t.Fatalf("after the given-back line: %q, %v, %v, cursor %v", l, ok, err, r.Cursor())
	}
	r.Close()

	// Another rotation, then resume at the end of generation 1.
	appendN(t, j, "line", 20, 30)
	if rep := drainWith(t, f.target, opts); rep.Rotations != 1 {
		t.Fatalf("third drain: %+v", rep)
	}
	c, _ = ParseCursor(saved)
	r, err = OpenReaderAt(f.target, c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	follow, stop = context.WithCancel(ctx)
	defer stop()
	next = 10
	var gens []uint64
	for l := range r.Lines(follow) {
		if l.Err != nil {
			t.Fatal(l.Err)
		}
		if want := fmt.Sprintf("line %d", next); string(l.Bytes) != want {
			t.Fatalf("resumed at the end of generation 1: got %q, want %q", l.Bytes, want)
		}
		if len(gens) == 0 || gens[len(gens)-1] != l.Cursor.Generation {
			gens = append(gens, l.Cursor.Generation)
		}
		if next++; next == 30 {
			stop()
		}
	}
	if fmt.Sprint(gens) != "[2 3]" {
		t.Fatalf("lines 10..29 came from generations %v, want [2 3]", gens)
	}
	if l, ok, err := r.TryNext(); ok || err != nil {
		t.Fatalf("a line after the last: %q, %v", l, err)
	}
	// OpenReader with an offset reads the current generation only.
	r3, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if c := pos(r3.Cursor()); c != (Cursor{Generation: 3}) {
		t.Fatalf("OpenReader(target, 0).Cursor() = %v, want 3:0", c)
	}
	if l, ok, err := r3.TryNext(); err != nil || !ok || string(l) != "line 20" {
		t.Fatalf("OpenReader(target, 0): %q, %v, %v", l, ok, err)
	}
}

// Retention removes old generations; a cursor in a removed generation is refused
// with ErrInvalidArgument, and a reader still in one fails with it too.
func TestRetentionAndCursors(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	opts := DrainOptions{Spool: f.spool, RotateLines: 5, RetainGenerations: 2}
	appendN(t, j, "line", 0, 5)
	drainWith(t, f.target, opts)

	// A slow reader in generation 1.
	slow, err := OpenReaderAt(f.target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if l, ok, err := slow.TryNext(); err != nil || !ok || string(l) != "line 0" {
		t.Fatalf("slow reader: %q, %v, %v", l, ok, err)
	}

	var rotations uint64
	for d := 1; d <= 6; d++ { // each drain rotates the full generation, then writes 5 lines
		appendN(t, j, "line", 5*d, 5*d+5)
		rotations += drainWith(t, f.target, opts).Rotations
	}
	st, err := Status(f.target, "")
	if err != nil {
		t.Fatal(err)
	}
	if rotations != 6 || st.Generation != 7 || st.RotatedGenerations != 2 || st.CommittedLines != 5 {
		t.Fatalf("%d rotations; Status: generation %d, %d rotated generations, %d lines", rotations,
			st.Generation, st.RotatedGenerations, st.CommittedLines)
	}
	for g := 1; g <= 6; g++ {
		_, err := os.Stat(fmt.Sprintf("%s.%d", f.target, g))
		if kept := g >= 5; kept != (err == nil) {
			t.Fatalf("generation %d: kept %v, but Stat says %v", g, kept, err)
		}
	}
	v := mustConsistent(t, f.target)
	if v.Generation != 7 || v.RotatedGenerations != 2 || v.CommittedLines != 5 {
		t.Fatalf("Verify: %+v", v)
	}

	_, err = OpenReaderAt(f.target, Cursor{Generation: 1, Offset: 0})
	if e := wantKind(t, err, KindInvalidArgument); !strings.Contains(e.Message, "no longer kept") {
		t.Fatalf("a cursor in a removed generation: %v", err)
	}
	for _, c := range []Cursor{{Generation: 99}, {Generation: 0, Offset: 3}, {Generation: 5, Offset: -1},
		{Generation: 5, Offset: 3}, {Generation: 5, Offset: 1 << 20}} {
		if _, err := OpenReaderAt(f.target, c); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("OpenReaderAt(%v): %v", c, err)
		}
	}

	// CursorStart is the oldest generation kept.
	r, err := OpenReaderAt(f.target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if c := pos(r.Cursor()); c != (Cursor{Generation: 5}) {
		t.Fatalf("CursorStart opened at %v, want 5:0", c)
	}
	for i := 20; i < 35; i++ {
		if l, ok, err := r.TryNext(); err != nil || !ok || string(l) != fmt.Sprintf("line %d", i) {
			t.Fatalf("from CursorStart, line %d: %q, %v, %v", i, l, ok, err)
		}
	}
	if _, ok, err := r.TryNext(); ok || err != nil {
		t.Fatalf("past the end: %v, %v", ok, err)
	}

	// The slow reader may still get the lines of generation 1 it had read ahead,
	// then fails: its generation is gone.
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	var got []string
	var last Line
	for l := range slow.Lines(ctx) {
		if l.Err == nil {
			got = append(got, string(l.Bytes))
		}
		last = l
	}
	if ctx.Err() != nil {
		t.Fatal("the slow reader did not fail")
	}
	wantKind(t, last.Err, KindInvalidArgument)
	if !errors.Is(slow.Err(), ErrInvalidArgument) || last.Cursor != slow.Cursor() || last.Cursor.Generation != 1 {
		t.Fatalf("slow reader: Err %v, last %+v, Cursor %v", slow.Err(), last, slow.Cursor())
	}
	for i, l := range got {
		if l != fmt.Sprintf("line %d", i+1) || i >= 4 {
			t.Fatalf("the slow reader's lines before failing: %q", got)
		}
	}
	t.Logf("slow reader: %d buffered lines of generation 1, then: %v", len(got), last.Err)
}

// Verify checks the rotated generations too.
func TestVerifyRotatedGenerations(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	opts := DrainOptions{Spool: f.spool, RotateBytes: 1}
	var rotations uint64
	for d := range 4 {
		appendN(t, j, "line", 3*d, 3*d+3)
		rotations += drainWith(t, f.target, opts).Rotations
	}
	v := mustConsistent(t, f.target)
	if rotations != 3 || v.Generation != 4 || v.RotatedGenerations != 3 || v.CommittedLines != 3 {
		t.Fatalf("%d rotations; Verify %+v", rotations, v)
	}
	st, err := Status(f.target, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != 4 || st.RotatedGenerations != 3 {
		t.Fatalf("Status: generation %d, %d rotated", st.Generation, st.RotatedGenerations)
	}

	// Change a committed byte of generation 2 behind tributary's back.
	path := f.target + ".2"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	v, err = Verify(f.target)
	if err != nil {
		t.Fatal(err)
	}
	if v.Consistent || len(v.Problems) != 1 || !strings.Contains(v.Problems[0], "generation 2") {
		t.Fatalf("Verify after changing generation 2: consistent=%v, problems %q", v.Consistent, v.Problems)
	}
}
