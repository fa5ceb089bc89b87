package tributary

// Tests of Compactor, the handle over several journal sources (trib_compactor_*).

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// DrainUntilEmpty over two spools (one not there yet), a journal given by path (also
// listed through its spool), a journal that does not exist yet and a junk one: every
// line once, then it returns by itself and counts what it could not drain; what
// appears later is drained by the next run.
func TestCompactorDrainUntilEmptyOverSeveralSources(t *testing.T) {
	f := newFixture(t)
	other := filepath.Join(t.TempDir(), "other-spool")
	missing := filepath.Join(f.dir, "later.journal")
	a := f.openJournal(t, "a", nil)
	if _, err := a.AppendBatch([][]byte{[]byte("a1"), []byte("a2")}); err != nil {
		t.Fatal(err)
	}
	loose, err := OpenJournal(filepath.Join(f.dir, "loose.journal"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer loose.Close()
	loose.AppendString("loose")
	if err := os.WriteFile(filepath.Join(f.spool, "junk.journal"), []byte("not a journal"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewCompactor(f.target, DrainOptions{Spool: f.spool, Journals: []string{loose.Path(), a.Path(), missing}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.AddSpool(other); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []CompactEvent
	rep, err := c.DrainUntilEmpty(context.Background(), RunOptions{
		Interval: time.Millisecond,
		OnEvent: func(e CompactEvent) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := targetLines(t, f.target)
	sort.Strings(got)
	if strings.Join(got, ",") != "a1,a2,loose" || rep.Lines != 3 {
		t.Fatalf("target %q, report %+v: want a1,a2,loose once each", got, rep)
	}
	// junk, the journal not there yet, the spool not there yet
	if rep.SetAside != 3 {
		t.Fatalf("SetAside = %d, want 3 (events %+v)", rep.SetAside, events)
	}
	subjects := map[string]CompactEventType{}
	for _, e := range events {
		subjects[e.Subject] = e.Type
	}
	if subjects["spool "+other] != EventProblem || subjects["journal "+missing] != EventSetAside {
		t.Fatalf("the missing spool and journal must be reported: %+v", events)
	}

	// They appear: the next run drains them; nothing else is drained twice.
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{missing, filepath.Join(other, "o.journal")} {
		j, err := OpenJournal(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		j.AppendString(filepath.Base(p))
		j.Close()
	}
	rep, err = c.DrainUntilEmpty(context.Background(), RunOptions{Interval: time.Millisecond})
	if err != nil || rep.Lines != 2 || rep.SetAside != 1 {
		t.Fatalf("second run: %+v, %v; want 2 lines, the junk journal still aside", rep, err)
	}
	got = targetLines(t, f.target)
	sort.Strings(got)
	if strings.Join(got, ",") != "a1,a2,later.journal,loose,o.journal" {
		t.Fatalf("target %q", got)
	}
}

// Run is the daemon: it goes on until ctx is done, picks up a journal that appears in
// a spool added before the run, and returns nil; Close after it makes calls fail
// with ErrClosed.
func TestCompactorRunUntilCancelled(t *testing.T) {
	f := newFixture(t)
	c, err := NewCompactor(f.target, DrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddSpool(f.spool); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var moved uint64
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, RunOptions{Interval: 5 * time.Millisecond, OnDrain: func(r DrainReport) {
			mu.Lock()
			moved += r.Lines
			mu.Unlock()
		}})
		done <- err
	}()
	j := f.openJournal(t, "late", nil)
	for _, l := range []string{"x", "y", "z"} {
		j.AppendString(l)
	}
	waitFor(t, "Run to move 3 lines", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return moved == 3
	})
	cancel()
	if err := await(t, done, "Run to return after cancel"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	c.Close()
	c.Close()
	if err := c.AddSpool(f.spool); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddSpool after Close: %v, want ErrClosed", err)
	}
	if _, err := c.Run(context.Background(), RunOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
}

// An error that needs a human ends a run with that error, and bad arguments are
// refused up front.
func TestCompactorErrors(t *testing.T) {
	f := newFixture(t)
	if _, err := NewCompactor(filepath.Join(f.dir, "nul\x00"), DrainOptions{}); err == nil {
		t.Fatal("a target with a NUL byte must be refused")
	}
	c, err := NewCompactor(f.target, DrainOptions{Spool: f.spool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.AddJournal(""); err == nil {
		t.Fatal("an empty journal path must be refused")
	}
	if _, err := c.Run(context.Background(), RunOptions{Interval: -time.Second}); err == nil {
		t.Fatal("a negative interval must be refused")
	}
	j := f.openJournal(t, "j", nil)
	j.AppendString("one")
	if _, err := c.DrainUntilEmpty(context.Background(), RunOptions{Interval: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j.AppendString("two")
	_, err = c.DrainUntilEmpty(context.Background(), RunOptions{Interval: time.Millisecond})
	wantKind(t, err, KindTargetTruncated)
}
