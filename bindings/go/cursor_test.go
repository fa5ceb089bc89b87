package tributary

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A cursor names one position of one target (design rule 7, issue 12 item 12): a
// line's identity (Line.Start, Reader.LineStart) is the same whether it is read before
// or after the rotation of its generation, so results keyed by it do not duplicate at
// a generation boundary; a Cursor carries its target's id and OpenReaderAt refuses it
// on another target; the bare "generation:offset" text is still read.

// cursorTarget creates a target in dir (drains never create one) and, if lines are
// given, drains them into it from its own journal.
func cursorTarget(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	target := filepath.Join(dir, name)
	if _, err := Init(context.Background(), target); err != nil {
		t.Fatalf("Init(%s): %v", name, err)
	}
	if len(lines) > 0 {
		j, err := OpenJournal(filepath.Join(dir, name+".journal"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		for _, l := range lines {
			if _, err := j.AppendString(l); err != nil {
				t.Fatal(err)
			}
		}
		drainWith(t, target, DrainOptions{Journals: []string{filepath.Join(dir, name+".journal")}})
	}
	return target
}

func targetID(t *testing.T, target string) string {
	t.Helper()
	st, err := Status(target, "")
	if err != nil {
		t.Fatal(err)
	}
	return st.TargetID
}

// lineNames are 12 bytes each with their '\n'.
func lineNames(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("line-%06d", i))
	}
	return out
}

// pos is c without its TargetID: the position alone.
func pos(c Cursor) Cursor { return Cursor{Generation: c.Generation, Offset: c.Offset} }

type startedLine struct {
	text  string
	start Cursor
}

// readStarts reads every committed line from r with TryNext, with LineStart after each.
func readStarts(t *testing.T, r *Reader) []startedLine {
	t.Helper()
	var out []startedLine
	for {
		l, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, startedLine{string(l), r.LineStart()})
	}
}

func TestLineStartIsTheSameBeforeAndAfterARotation(t *testing.T) {
	dir := t.TempDir()
	target := cursorTarget(t, dir, "a.log")
	jp := filepath.Join(dir, "a.journal")
	j, err := OpenJournal(jp, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, l := range lineNames(0, 3) {
		j.AppendString(l)
	}
	drainWith(t, target, DrainOptions{Journals: []string{jp}})
	// A reader reads generation 1 to its end while it is the current one...
	early, err := OpenReaderAt(target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if (early.LineStart() != Cursor{}) {
		t.Fatalf("LineStart before any line = %v", early.LineStart())
	}
	seenEarly := readStarts(t, early)
	if early.Cursor().Generation != 1 {
		t.Fatalf("generation 1 should still be current: %v", early.Cursor())
	}
	// ...then a drain rotates it, and the same reader goes on into generation 2.
	for _, l := range lineNames(3, 6) {
		j.AppendString(l)
	}
	if rep := drainWith(t, target, DrainOptions{Journals: []string{jp}, RotateBytes: 1}); rep.Rotations != 1 {
		t.Fatalf("drain: %+v", rep)
	}
	seenEarly = append(seenEarly, readStarts(t, early)...)
	// A reader after the rotation sees every line with the same start; Lines too.
	late, err := OpenReaderAt(target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	seenLate := readStarts(t, late)
	if !slices.Equal(seenEarly, seenLate) {
		t.Fatalf("line starts differ:\nread before the rotation %v\nread after it           %v", seenEarly, seenLate)
	}
	id := targetID(t, target)
	if want := (Cursor{Generation: 2, Offset: 0, TargetID: id}); len(seenLate) != 6 || seenLate[3].start != want {
		t.Fatalf("the first line of generation 2 starts at %v, want %v", seenLate[3].start, want)
	}
	follower, err := OpenReaderAt(target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	i := 0
	for l := range follower.Lines(ctx) {
		if l.Err != nil || string(l.Bytes) != seenLate[i].text || l.Start != seenLate[i].start {
			t.Fatalf("Lines: %q start %v (%v), want %q start %v", l.Bytes, l.Start, l.Err, seenLate[i].text,
				seenLate[i].start)
		}
		if i++; i == len(seenLate) {
			cancel()
		}
	}
}

// The pattern of examples/pipeline: results keyed by their source line's start, the
// cursor kept after them; the processor reads the first lines after a rotation it has
// not seen yet, and is killed before keeping its cursor.
func TestKeyedResultsDoNotDuplicateAcrossARotation(t *testing.T) {
	dir := t.TempDir()
	a := cursorTarget(t, dir, "a.log")
	b := cursorTarget(t, dir, "b.log")
	srcPath, outPath := filepath.Join(dir, "events.journal"), filepath.Join(dir, "results.journal")
	src, err := OpenJournal(srcPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out, err := OpenJournal(outPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	events := lineNames(0, 6)
	for _, e := range events[:3] {
		src.AppendString(e)
	}
	drainWith(t, a, DrainOptions{Journals: []string{srcPath}})

	kept := "" // the processor's durable cursor, as text
	process := func(r *Reader, keep bool) {
		for {
			l, ok, err := r.TryNext()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			key := "A:" + r.LineStart().String()
			if _, err := out.AppendKeyed([]byte(key), []byte("processed "+string(l))); err != nil {
				t.Fatal(err)
			}
		}
		if keep {
			kept = r.Cursor().String()
		}
	}
	run1, err := OpenReaderAt(a, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	process(run1, true)
	for _, e := range events[3:] {
		src.AppendString(e)
	}
	if rep := drainWith(t, a, DrainOptions{Journals: []string{srcPath}, RotateBytes: 1}); rep.Rotations != 1 {
		t.Fatalf("drain: %+v", rep)
	}
	process(run1, false) // killed before keeping its cursor
	run1.Close()
	c, err := ParseCursor(kept)
	if err != nil {
		t.Fatal(err)
	}
	run2, err := OpenReaderAt(a, c) // restarted: replays the events of generation 2
	if err != nil {
		t.Fatal(err)
	}
	process(run2, true)
	run2.Close()

	drainWith(t, b, DrainOptions{Journals: []string{outPath}})
	got := targetLines(t, b)
	var want []string
	for _, e := range events {
		want = append(want, "processed "+e)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("results in B: %q\nwant each of %q once", got, want)
	}
}

func TestACursorOfOneTargetIsRefusedOnAnother(t *testing.T) {
	dir := t.TempDir()
	lines := lineNames(0, 5)
	// The same lines in both: an offset of A is a line start in B too.
	a := cursorTarget(t, dir, "a.log", lines...)
	b := cursorTarget(t, dir, "b.log", lines...)
	idA, idB := targetID(t, a), targetID(t, b)
	r, err := OpenReaderAt(a, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	r.TryNext()
	r.TryNext()
	kept := r.Cursor()
	r.Close()
	for _, c := range []Cursor{kept, {Generation: 1, Offset: 24, TargetID: strings.ToUpper(idA)}} {
		rb, err := OpenReaderAt(b, c)
		if err == nil {
			l, _, _ := rb.TryNext()
			rb.Close()
			t.Fatalf("A's cursor %v was accepted on B (next line %q: lines skipped)", c, l)
		}
		e := wantKind(t, err, KindInvalidArgument)
		if !strings.Contains(e.Message, "belongs to target "+idA) || !strings.Contains(e.Message, "is target "+idB) ||
			!strings.Contains(e.Message, "cannot be used on another") {
			t.Fatalf("refusal: %v", err)
		}
	}
	if want := (Cursor{Generation: 1, Offset: 24, TargetID: idA}); kept != want {
		t.Fatalf("kept %v, want %v", kept, want)
	}
	if c, err := ParseCursor(kept.String()); err != nil || c != kept {
		t.Fatalf("ParseCursor(%q) = %v, %v", kept.String(), c, err)
	}
	// B from its start has every line; A's cursor still works on A.
	rb, err := OpenReaderAt(b, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	var got []string
	for _, l := range readStarts(t, rb) {
		got = append(got, l.text)
	}
	if !slices.Equal(got, lines) {
		t.Fatalf("B: %q", got)
	}
	ra, err := OpenReaderAt(a, kept)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if l, ok, err := ra.TryNext(); err != nil || !ok || string(l) != lines[2] {
		t.Fatalf("A at its own cursor: %q, %v, %v", l, ok, err)
	}
	if _, err := OpenReaderAt(a, Cursor{Generation: 1, TargetID: "not hex"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a bad TargetID: %v", err)
	}
}

func TestAReaderOpenedBeforeTheTargetExistsLearnsItsID(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "later.log")
	r, err := OpenReaderAt(target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if c := r.Cursor(); (c != Cursor{Generation: 1}) {
		t.Fatalf("Cursor before the target exists = %v, want 1:0 without an id", c)
	}
	cursorTarget(t, dir, "later.log", "first")
	l, ok, err := r.TryNext()
	if err != nil || !ok || string(l) != "first" {
		t.Fatalf("TryNext: %q, %v, %v", l, ok, err)
	}
	id := targetID(t, target)
	if c, s := r.Cursor(), r.LineStart(); c != (Cursor{1, 6, id}) || s != (Cursor{1, 0, id}) {
		t.Fatalf("Cursor %v, LineStart %v; want the target's id %s", c, s, id)
	}
}

func TestCursorTextWithTheTargetIDAndTheLegacyForm(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	for _, c := range []Cursor{CursorStart, {1, 0, ""}, {3, 1024, id}, {1<<64 - 1, 1<<63 - 1, id}} {
		got, err := ParseCursor(c.String())
		if err != nil || got != c {
			t.Fatalf("ParseCursor(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	if s := (Cursor{Generation: 2, Offset: 17, TargetID: id}).String(); s != id+":2:17" {
		t.Fatalf("String = %q", s)
	}
	if c, err := ParseCursor(strings.ToUpper(id) + ":2:17"); err != nil || c.TargetID != id {
		t.Fatalf("upper-case id: %v, %v", c, err)
	}
	legacy, err := ParseCursor("2:17")
	if err != nil || legacy != (Cursor{Generation: 2, Offset: 17}) || legacy.String() != "2:17" {
		t.Fatalf("legacy: %v, %v", legacy, err)
	}
	for _, bad := range []string{"", "3", "3:", ":4", "a:1", "1:-1", "-1:0", "+1:0", "1:2:3", "1:2:3:4", " 1:2", "0:5",
		id + "0:1:0", "zz:1:0", id[:31] + "g:1:0"} {
		if _, err := ParseCursor(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("ParseCursor(%q): %v", bad, err)
		}
	}
	// A legacy cursor cannot be checked: it opens on any target, and comes back with
	// the target's id.
	dir := t.TempDir()
	a := cursorTarget(t, dir, "a.log", lineNames(0, 5)...)
	r, err := OpenReaderAt(a, Cursor{Generation: 1, Offset: 12})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if l, ok, err := r.TryNext(); err != nil || !ok || string(l) != "line-000001" {
		t.Fatalf("TryNext: %q, %v, %v", l, ok, err)
	}
	if c := r.Cursor(); c != (Cursor{1, 24, targetID(t, a)}) {
		t.Fatalf("Cursor %v", c)
	}
}
