package tributary

// A processor's pieces: the cursor store, results committed with their cursor, keyed
// outcomes and the keyed batch, a reader's lag.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// drainInto drains the journals into target.
func drainInto(t *testing.T, target string, journals ...string) {
	t.Helper()
	if _, err := Drain(context.Background(), target, DrainOptions{Journals: journals}); err != nil {
		t.Fatalf("Drain(%s): %v", target, err)
	}
}

func TestCursorStoreRoundTripAndResume(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "a", nil)
	if _, err := j.AppendBatch([][]byte{[]byte("one"), []byte("two"), []byte("three")}); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	path := filepath.Join(f.dir, "r.cursors")
	s, err := OpenCursorStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get("r1"); ok || err != nil {
		t.Fatalf("Get of a cursor never committed: ok=%v err=%v", ok, err)
	}
	r, err := OpenReaderAt(f.target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if l, ok, err := r.TryNext(); !ok || err != nil || string(l) != "one" {
		t.Fatalf("TryNext: %q %v %v", l, ok, err)
	}
	if err := s.Commit("r1", r.Cursor()); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.Commit("", r.Cursor()), KindInvalidArgument)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get("r1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	s, err = OpenCursorStore(path) // durable across handles
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, ok, err := s.Get("r1")
	if !ok || err != nil || c != r.Cursor() || c.TargetID == "" {
		t.Fatalf("Get: %v %v %v, want %v", c, ok, err, r.Cursor())
	}
	r2, err := OpenReaderAt(f.target, c)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if l, ok, err := r2.TryNext(); !ok || err != nil || string(l) != "two" {
		t.Fatalf("resumed: %q %v %v", l, ok, err)
	}
	other := filepath.Join(f.dir, "other.log")
	if _, err := Init(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	_, err = OpenReaderAt(other, c)
	wantKind(t, err, KindInvalidArgument)
}

func TestKeyedOutcomesAndKeyedBatch(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "k", nil)
	if o, err := j.AppendKeyedOutcome([]byte("k1"), []byte("one")); err != nil || o != (KeyedAppend{1, true}) {
		t.Fatalf("first: %+v %v", o, err)
	}
	if o, err := j.AppendKeyedOutcome([]byte("k1"), []byte("one")); err != nil || o != (KeyedAppend{1, false}) {
		t.Fatalf("retry: %+v %v", o, err)
	}
	keys := [][]byte{[]byte("k2"), []byte("k1"), []byte("k2")}
	lines := [][]byte{[]byte("two"), []byte("again"), []byte("dup")}
	out, err := j.AppendKeyedBatch(keys, lines)
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyedAppend{{2, true}, {1, false}, {2, false}}
	if !slices.Equal(out, want) {
		t.Fatalf("batch: %+v, want %+v", out, want)
	}
	_, err = j.AppendKeyedBatch(keys, lines[:2])
	wantKind(t, err, KindInvalidArgument)
	_, err = j.AppendKeyedBatch([][]byte{[]byte("k3")}, [][]byte{[]byte("bad\n")})
	wantKind(t, err, KindInvalidLine)
	if out, err := j.AppendKeyedBatch(nil, nil); err != nil || len(out) != 0 {
		t.Fatalf("empty batch: %v %v", out, err)
	}
	// Two journals on one file (as two processes), retrying the same keys at once:
	// for each key exactly one call stored it.
	j2 := f.openJournal(t, "k", nil)
	const n = 100
	mk := func(i int) ([][]byte, [][]byte) {
		return [][]byte{[]byte(fmt.Sprintf("key-%d", i))}, [][]byte{[]byte("line")}
	}
	results := make([][]KeyedAppend, 2)
	done := make(chan struct{})
	for w, jj := range []*Journal{j, j2} {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < n; i++ {
				k, l := mk(i)
				o, err := jj.AppendKeyedBatch(k, l)
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], o[0])
			}
		}()
	}
	<-done
	<-done
	for i := 0; i < n && len(results[0]) == n && len(results[1]) == n; i++ {
		a, b := results[0][i], results[1][i]
		if a.Seq != b.Seq || a.Stored == b.Stored {
			t.Fatalf("key %d: %+v and %+v", i, a, b)
		}
	}
	if b, err := j.Backlog(); err != nil || b.Lines != 2+n {
		t.Fatalf("backlog %+v %v", b, err)
	}
}

func TestAppendBatchWithCursorCommitsResultsAndCursorTogether(t *testing.T) {
	f := newFixture(t)
	src := f.openJournal(t, "src", nil)
	if _, err := src.AppendBatch([][]byte{[]byte("one"), []byte("two"), []byte("three")}); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	b := filepath.Join(f.dir, "b.log")
	if _, err := Init(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	p, err := OpenJournal(filepath.Join(f.dir, "p.journal"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, ok, err := p.Cursor("A"); ok || err != nil {
		t.Fatalf("Cursor before any commit: %v %v", ok, err)
	}
	r, err := OpenReaderAt(f.target, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if lag, err := r.Lag(); err != nil || lag != (Lag{Bytes: 14}) {
		t.Fatalf("Lag: %+v %v", lag, err)
	}
	line, _, _ := r.TryNext()
	if lag, err := r.Lag(); err != nil || lag.Bytes != 10 {
		t.Fatalf("Lag after a line: %+v %v", lag, err)
	}
	if seq, err := p.AppendBatchWithCursor([][]byte{append([]byte("r:"), line...)}, "A", r.Cursor()); err != nil || seq != 1 {
		t.Fatalf("AppendBatchWithCursor: %d %v", seq, err)
	}
	if c, ok, err := p.Cursor("A"); !ok || err != nil || c != r.Cursor() {
		t.Fatalf("Cursor: %v %v %v, want %v", c, ok, err, r.Cursor())
	}
	if seq, err := p.AppendBatchWithCursor(nil, "A", r.Cursor()); err != nil || seq != 0 {
		t.Fatalf("cursor only: %d %v", seq, err)
	}
	_, err = p.AppendBatchWithCursor([][]byte{[]byte("ok"), []byte("bad\n")}, "A", CursorStart)
	wantKind(t, err, KindInvalidLine)
	rb, err := OpenReaderAt(b, CursorStart)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	_, err = p.AppendBatchWithCursor([][]byte{[]byte("x")}, "A", rb.Cursor())
	if e := wantKind(t, err, KindInvalidArgument); !strings.Contains(e.Message, "one cursor name follows one target") {
		t.Fatalf("message: %s", e.Message)
	}
	c, _, _ := p.Cursor("A")
	if c != r.Cursor() {
		t.Fatalf("a refused commit moved the cursor: %v", c)
	}
	drainInto(t, b, p.Path())
	if got := targetLines(t, b); !slices.Equal(got, []string{"r:one"}) {
		t.Fatalf("B: %q", got)
	}
	resumed, err := OpenReaderAt(f.target, c)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if l, ok, err := resumed.TryNext(); !ok || err != nil || string(l) != "two" {
		t.Fatalf("resumed: %q %v %v", l, ok, err)
	}
	_, err = OpenReaderAt(b, c)
	wantKind(t, err, KindInvalidArgument)
	if _, _, err := resumed.TryNext(); err != nil {
		t.Fatal(err)
	}
	if lag, err := resumed.Lag(); err != nil || lag != (Lag{}) {
		t.Fatalf("Lag at the end: %+v %v", lag, err)
	}
}
