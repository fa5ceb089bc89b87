package tributary

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestVersions(t *testing.T) {
	if LibraryVersion() == "" {
		t.Fatal("empty library version")
	}
	if ABIVersion < 1 {
		t.Fatalf("ABIVersion = %d", ABIVersion)
	}
}

func TestKindNamesMatchTheLibrary(t *testing.T) {
	for k := range kindNames {
		if got, want := k.String(), resultName(int(k)); got != want {
			t.Errorf("ErrorKind(%d).String() = %q, the library says %q", int(k), got, want)
		}
		if kindSentinels[k] == nil {
			t.Errorf("kind %v has no sentinel", k)
		}
	}
	// Every code the library names has a kind here.
	for code := 1; code <= 200; code++ {
		if name := resultName(code); name != "unknown" {
			if _, ok := kindNames[ErrorKind(code)]; !ok {
				t.Errorf("the library defines code %d (%s), this package does not", code, name)
			}
		}
	}
	if got := ErrorKind(77).String(); got != "unknown(77)" {
		t.Errorf("unknown kind: %q", got)
	}
}

func TestJournalAppendDrainRead(t *testing.T) {
	f := newBareFixture(t)
	j := f.openJournal(t, "a", nil)
	if len(j.ID()) != 32 {
		t.Fatalf("ID() = %q, want 32 hex digits", j.ID())
	}
	if j.Path() != f.journalPath("a") || j.MaxLineBytes() != DefaultMaxLineBytes {
		t.Fatalf("Path/MaxLineBytes: %q %d", j.Path(), j.MaxLineBytes())
	}

	var want [][]byte
	beforeFirst := time.Now().Truncate(time.Millisecond) // OldestAppend has millisecond resolution
	seq, err := j.Append([]byte("hello"))
	if err != nil || seq != 1 {
		t.Fatalf("Append = %d, %v; want 1, nil", seq, err)
	}
	want = append(want, []byte("hello"))
	if seq, err = j.AppendString("world"); err != nil || seq != 2 {
		t.Fatalf("AppendString = %d, %v; want 2, nil", seq, err)
	}
	want = append(want, []byte("world"))
	// Empty lines, NULs, invalid UTF-8 and '\r' are all lines.
	odd := [][]byte{{}, nil, []byte("nul\x00byte"), {0xff, 0xfe, 'x'}, []byte("cr\r")}
	first, err := j.AppendBatch(odd)
	if err != nil || first != 3 {
		t.Fatalf("AppendBatch = %d, %v; want 3, nil", first, err)
	}
	want = append(want, odd...)
	if seq, err = j.AppendKeyed([]byte("req-1"), []byte("charged 12.00 EUR")); err != nil || seq != 8 {
		t.Fatalf("AppendKeyed = %d, %v; want 8, nil", seq, err)
	}
	want = append(want, []byte("charged 12.00 EUR"))
	// A retry with the same key stores nothing and returns the first seq.
	if seq, err = j.AppendKeyed([]byte("req-1"), []byte("charged 12.00 EUR")); err != nil || seq != 8 {
		t.Fatalf("AppendKeyed retry = %d, %v; want 8, nil", seq, err)
	}

	b, err := j.Backlog()
	if err != nil {
		t.Fatal(err)
	}
	if b.Lines != uint64(len(want)) || b.LastSeq != 8 || b.DrainedSeq != 0 || b.OldestAppend.IsZero() {
		t.Fatalf("Backlog = %+v", b)
	}
	// The first line was appended between beforeFirst and now.
	if now := time.Now(); b.OldestAppend.Before(beforeFirst) || b.OldestAppend.After(now) {
		t.Fatalf("OldestAppend %v is not between the first append's start %v and now %v", b.OldestAppend,
			beforeFirst, now)
	}

	// Status before Init: no manifest, no target (and Status created neither).
	st, err := Status(f.target, f.spool)
	if err != nil {
		t.Fatal(err)
	}
	if st.HasManifest || st.TargetExists || len(st.Journals) != 1 || st.Journals[0].Backlog.Lines != uint64(len(want)) {
		t.Fatalf("Status before Init = %+v", st)
	}
	if got := entries(t, f.dir); fmt.Sprint(got) != "[spool]" {
		t.Fatalf("Status created %q", got)
	}
	created := f.init(t)
	if !created.Created || len(created.TargetID) != 32 || created.AdoptedLines != 0 {
		t.Fatalf("Init = %+v", created)
	}
	st, err = Status(f.target, "")
	if err != nil || !st.HasManifest || !st.TargetExists || st.TargetID != created.TargetID || st.CommittedLines != 0 {
		t.Fatalf("Status after Init = %+v, %v", st, err)
	}

	r := f.drain(t)
	if r.Lines != uint64(len(want)) || r.Rounds != 1 || r.Journals != 1 || r.Epoch < 1 {
		t.Fatalf("DrainReport = %+v", r)
	}
	if r2 := f.drain(t); r2.Lines != 0 {
		t.Fatalf("a second drain moved %d lines", r2.Lines)
	}
	b, _ = j.Backlog()
	if b.Lines != 0 || b.DrainedSeq != 8 || !b.OldestAppend.IsZero() {
		t.Fatalf("Backlog after drain = %+v", b)
	}

	v := mustConsistent(t, f.target)
	if v.CommittedLines != uint64(len(want)) || v.TargetLen != v.CommittedLen || v.UncommittedTailBytes != 0 ||
		len(v.Problems) != 0 {
		t.Fatalf("VerifyReport = %+v", v)
	}

	st, err = Status(f.target, f.spool)
	if err != nil {
		t.Fatal(err)
	}
	if !st.HasManifest || st.TargetID != created.TargetID || st.CommittedLines != uint64(len(want)) ||
		st.CommittedLen != v.CommittedLen || !st.TargetExists || st.TargetLen != v.CommittedLen {
		t.Fatalf("Status = %+v", st)
	}
	if len(st.Watermarks) != 1 || st.Watermarks[0].JournalID != j.ID() || st.Watermarks[0].LastSeq != 8 {
		t.Fatalf("Watermarks = %+v", st.Watermarks)
	}
	if len(st.Journals) != 1 || st.Journals[0].Path != j.Path() || st.Journals[0].Watermark != 8 ||
		st.Journals[0].JournalID != j.ID() {
		t.Fatalf("Journals = %+v", st.Journals)
	}
	if st2, err := Status(f.target, ""); err != nil || len(st2.Journals) != 0 || len(st2.Watermarks) != 1 {
		t.Fatalf("Status without spool = %+v, %v", st2, err)
	}

	// Read everything back, in order, with offsets that reopen where they say.
	rd, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if rd.Target() != f.target {
		t.Fatalf("Target() = %q", rd.Target())
	}
	var offsets []int64
	for i, w := range want {
		got, err := rd.Next(context.Background()) // committed: Next does not wait
		if err != nil {
			t.Fatalf("Next #%d: %v", i, err)
		}
		if !bytes.Equal(got, w) || got == nil {
			t.Fatalf("line %d = %q, want %q", i, got, w)
		}
		offsets = append(offsets, rd.Offset())
	}
	if rd.Offset() != int64(v.CommittedLen) {
		t.Fatalf("Offset at end = %d, want %d", rd.Offset(), v.CommittedLen)
	}
	if l, ok, err := rd.TryNext(); ok || err != nil || l != nil {
		t.Fatalf("TryNext at the end = %q, %v, %v", l, ok, err)
	}
	// Reopen at each offset: the next line is the one after.
	for i, off := range offsets[:len(offsets)-1] {
		r2, err := OpenReader(f.target, off)
		if err != nil {
			t.Fatalf("OpenReader at %d: %v", off, err)
		}
		got, ok, err := r2.TryNext()
		r2.Close()
		if err != nil || !ok || !bytes.Equal(got, want[i+1]) {
			t.Fatalf("reopened at %d: %q, %v, %v; want %q", off, got, ok, err, want[i+1])
		}
	}
}

func TestJournalOptions(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "opts", &JournalOptions{
		Durability:      DurabilityNormal,
		MaxLineBytes:    10,
		MaxBacklogBytes: 1000,
		KeyRetention:    time.Hour,
		BusyTimeout:     time.Second,
	})
	if j.MaxLineBytes() != 10 {
		t.Fatalf("MaxLineBytes = %d", j.MaxLineBytes())
	}
	if _, err := j.Append([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	_, err := j.Append([]byte("0123456789x"))
	wantKind(t, err, KindInvalidLine)
	if DurabilityFull.String() != "full" || DurabilityNormal.String() != "normal" || Durability(9).String() == "" {
		t.Fatal("Durability.String")
	}
	// Zero options are the defaults.
	j2 := f.openJournal(t, "zero", &JournalOptions{})
	if j2.MaxLineBytes() != DefaultMaxLineBytes {
		t.Fatalf("zero options: MaxLineBytes = %d", j2.MaxLineBytes())
	}
}

func TestCloseIsIdempotentAndLaterCallsFail(t *testing.T) {
	f := newFixture(t)
	j, err := OpenJournal(f.journalPath("c"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]func() error{
		"Append":       func() error { _, err := j.Append([]byte("x")); return err },
		"AppendString": func() error { _, err := j.AppendString("x"); return err },
		"AppendBatch":  func() error { _, err := j.AppendBatch([][]byte{[]byte("x")}); return err },
		"AppendKeyed":  func() error { _, err := j.AppendKeyed([]byte("k"), []byte("x")); return err },
		"Backlog":      func() error { _, err := j.Backlog(); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
		wantKind(t, err, KindInvalidArgument)
	}

	f.drain(t)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second reader Close: %v", err)
	}
	_, err = r.Next(context.Background())
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Next after Close: %v", err)
	}
	if _, _, err := r.TryNext(); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryNext after Close: %v", err)
	}
	var n int
	for range r.Lines(context.Background()) {
		n++
	}
	if n != 0 || r.Err() != nil {
		t.Fatalf("Lines after Close delivered %d lines, Err %v", n, r.Err())
	}
}

// Close while other goroutines append: Close waits for calls in progress; every
// call either succeeded (and its line is drained) or failed with ErrClosed.
func TestCloseDuringAppends(t *testing.T) {
	f := newFixture(t)
	j, err := OpenJournal(f.journalPath("race"), &JournalOptions{Durability: DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines = 8
	var mu sync.Mutex
	var ok []string
	perG := make([]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				line := fmt.Sprintf("g%d-%d", g, i)
				if _, err := j.AppendString(line); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("append: %v", err)
					}
					return
				}
				mu.Lock()
				ok = append(ok, line)
				perG[g]++
				mu.Unlock()
			}
		}()
	}
	// Close once every goroutine has appended (they go on appending until Close).
	waitFor(t, "every goroutine to append", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !slices.Contains(perG, 0) || t.Failed()
	})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	f.drain(t)
	got := targetLines(t, f.target)
	sort.Strings(got)
	sort.Strings(ok)
	if fmt.Sprint(got) != fmt.Sprint(ok) || len(ok) == 0 {
		t.Fatalf("target has %d lines, %d appends succeeded", len(got), len(ok))
	}
}

// An unreachable, unclosed Journal is closed by its finalizer (a backstop). SQLite
// removes the WAL file when the last connection to a database closes, which shows
// that the handle was closed.
func TestFinalizerBackstop(t *testing.T) {
	f := newFixture(t)
	wal := f.journalPath("leak") + "-wal"
	func() {
		j, err := OpenJournal(f.journalPath("leak"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append([]byte("leaked")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(wal); err != nil {
			t.Skipf("no WAL file while the journal is open (%v): cannot observe the close", err)
		}
	}()
	waitFor(t, "the finalizer to close the journal", func() bool {
		runtime.GC()
		_, err := os.Stat(wal)
		return os.IsNotExist(err)
	})
	f.drain(t)
	if got := targetLines(t, f.target); len(got) != 1 || got[0] != "leaked" {
		t.Fatalf("target = %q", got)
	}
}

func TestSixteenGoroutinesShareOneJournal(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "shared", nil) // durability full: group commit shares the fsyncs
	const goroutines, perG = 16, 60
	seqs := make([][]uint64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				line := []byte(fmt.Sprintf("g%02d-%04d", g, i))
				if i%10 == 8 { // some batches of 2, consecutive seqs
					next := []byte(fmt.Sprintf("g%02d-%04d", g, i+1))
					first, err := j.AppendBatch([][]byte{line, next})
					if err != nil {
						t.Errorf("AppendBatch: %v", err)
						return
					}
					seqs[g] = append(seqs[g], first, first+1)
					i++
					continue
				}
				seq, err := j.Append(line)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				seqs[g] = append(seqs[g], seq)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Every seq distinct, 1..N without gaps, increasing within a goroutine.
	seen := map[uint64]bool{}
	for g, ss := range seqs {
		for i, s := range ss {
			if seen[s] {
				t.Fatalf("seq %d given twice", s)
			}
			seen[s] = true
			if i > 0 && s <= ss[i-1] {
				t.Fatalf("goroutine %d: seq %d after %d", g, s, ss[i-1])
			}
		}
	}
	total := goroutines * perG
	for s := uint64(1); s <= uint64(total); s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing (of %d)", s, total)
		}
	}
	if r := f.drain(t); r.Lines != uint64(total) {
		t.Fatalf("drained %d lines, want %d", r.Lines, total)
	}
	got := targetLines(t, f.target)
	count := map[string]int{}
	next := make([]int, goroutines)
	for _, l := range got {
		count[l]++
		var g, i int
		if _, err := fmt.Sscanf(l, "g%02d-%04d", &g, &i); err != nil {
			t.Fatalf("bad line %q", l)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d where %d was expected (order)", g, i, next[g])
		}
		next[g]++
	}
	if len(got) != total || len(count) != total {
		t.Fatalf("target: %d lines, %d distinct; want %d exactly once", len(got), len(count), total)
	}
	mustConsistent(t, f.target)
}

func TestDrainJournalsByPath(t *testing.T) {
	f := newFixture(t)
	a := f.openJournal(t, "a", nil)
	b := f.openJournal(t, "b", nil)
	a.AppendString("from a")
	b.AppendString("from b")
	// A journal path that does not exist is refused (a drain never creates journals:
	// a typo would otherwise drain nothing, silently), and nothing is drained.
	missing := filepath.Join(f.dir, "missing.journal")
	_, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{a.Path(), b.Path(), missing}})
	wantKind(t, err, KindNotAJournal)
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the missing journal was created: %v", err)
	}
	r, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{a.Path(), b.Path()}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Lines != 2 || r.Journals != 2 {
		t.Fatalf("DrainReport = %+v", r)
	}
	got := targetLines(t, f.target)
	sort.Strings(got)
	if fmt.Sprint(got) != "[from a from b]" {
		t.Fatalf("target = %q", got)
	}
	// Neither journals nor spool, with Create: creates the target and its manifest only.
	empty := filepath.Join(f.dir, "empty.log")
	if r, err := Drain(context.Background(), empty, DrainOptions{Create: true}); err != nil || r.Lines != 0 {
		t.Fatalf("Drain with no journals: %+v, %v", r, err)
	}
	if v := mustConsistent(t, empty); v.CommittedLen != 0 {
		t.Fatalf("empty target: %+v", v)
	}
}

// A spool drain drains every journal it can, then returns the first unusable file's
// error with the report of what it drained (it returned an empty report).
func TestDrainSpoolWithAJunkFileReportsWhatItDrained(t *testing.T) {
	f := newFixture(t)
	a := f.openJournal(t, "a", nil)
	a.AppendString("one")
	a.AppendString("two")
	if err := os.WriteFile(filepath.Join(f.spool, "junk.journal"), []byte("not an SQLite file, not even a little"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	wantKind(t, err, KindNotAJournal)
	if r.Lines != 2 || r.Journals != 1 || !strings.Contains(err.Error(), "junk.journal") {
		t.Fatalf("Drain of a spool with a junk file = %+v, %v", r, err)
	}
}

func TestDrainContext(t *testing.T) {
	f := newBareFixture(t)
	j := f.openJournal(t, "ctx", nil)
	j.AppendString("waiting")
	create := DrainOptions{Spool: f.spool, Create: true}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Drain(ctx, f.target, create); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with a cancelled context: %v", err)
	}
	if _, err := Init(ctx, f.target); !errors.Is(err, context.Canceled) {
		t.Fatalf("Init with a cancelled context: %v", err)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := Drain(ctx, f.target, create); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with an expired deadline: %v", err)
	}
	if b, _ := j.Backlog(); b.Lines != 1 {
		t.Fatalf("a cancelled Drain moved lines: %+v", b)
	}
	if got := entries(t, f.dir); fmt.Sprint(got) != "[spool]" {
		t.Fatalf("a cancelled Drain or Init created %q", got)
	}
	// A context with a distant deadline drains normally.
	ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if r, err := Drain(ctx, f.target, create); err != nil || r.Lines != 1 {
		t.Fatalf("Drain = %+v, %v", r, err)
	}
}

// Retire drains a journal, then deletes it; a writer that still has it open gets
// ErrJournalGone on its next append (nothing stored); misuse is ErrInvalidArgument.
func TestRetire(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "job", nil)
	j.AppendString("one")
	j.AppendString("two")
	n, err := Retire(context.Background(), f.target, DrainOptions{Journals: []string{j.Path()}})
	if err != nil || n != 1 {
		t.Fatalf("Retire = %d, %v", n, err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if _, err := os.Stat(j.Path() + suffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s%s still exists: %v", j.Path(), suffix, err)
		}
	}
	_, err = j.AppendString("too late")
	if !errors.Is(err, ErrJournalGone) {
		t.Fatalf("append to a retired journal: %v, want ErrJournalGone", err)
	}
	if got := fmt.Sprint(targetLines(t, f.target)); got != "[one two]" {
		t.Fatalf("target = %s", got)
	}
	_, err = Retire(context.Background(), f.target, DrainOptions{Spool: f.spool})
	wantKind(t, err, KindInvalidArgument)
	// retired before: named, after the other journal given was retired
	other := f.openJournal(t, "other", nil)
	other.AppendString("three")
	other.Close()
	n, err = Retire(context.Background(), f.target, DrainOptions{Journals: []string{j.Path(), other.Path()}})
	wantKind(t, err, KindNotAJournal)
	if n != 1 || !strings.Contains(err.Error(), "job") || !strings.Contains(err.Error(), "retired before") {
		t.Fatalf("Retire of a retired and a live journal = %d, %v", n, err)
	}
	if got := fmt.Sprint(targetLines(t, f.target)); got != "[one two three]" {
		t.Fatalf("target = %s", got)
	}
}

// A journal holding idempotency keys is retired only with ForgetKeys (the refusal
// says so); Drain refuses the option.
func TestRetireForgettingKeys(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "keyed", nil)
	if _, err := j.AppendKeyed([]byte("order-1"), []byte("one")); err != nil {
		t.Fatal(err)
	}
	j.Close()
	opts := DrainOptions{Journals: []string{j.Path()}}
	n, err := Retire(context.Background(), f.target, opts)
	wantKind(t, err, KindInvalidArgument)
	if n != 0 || !strings.Contains(err.Error(), "idempotency key") || !strings.Contains(err.Error(), "ForgetKeys") {
		t.Fatalf("Retire of a keyed journal = %d, %v", n, err)
	}
	opts.ForgetKeys = true
	_, err = Drain(context.Background(), f.target, opts)
	wantKind(t, err, KindInvalidArgument)
	err = Compact(context.Background(), f.target, CompactOptions{DrainOptions: opts})
	wantKind(t, err, KindInvalidArgument)
	if !strings.HasPrefix(err.Error(), "tributary: compact: ") {
		t.Fatalf("Compact with ForgetKeys: %v (not named as compact's)", err)
	}
	if n, err = Retire(context.Background(), f.target, opts); err != nil || n != 1 {
		t.Fatalf("Retire with ForgetKeys = %d, %v", n, err)
	}
	if _, err := os.Stat(j.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists: %v", j.Path(), err)
	}
	if got := fmt.Sprint(targetLines(t, f.target)); got != "[one]" {
		t.Fatalf("target = %s", got)
	}
}
