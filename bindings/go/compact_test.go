package tributary

// Tests of Compact, the daemon (it runs the library's daemon loop through trib_compact).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestCompact(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "c", nil)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var moved uint64
	done := make(chan error, 1)
	go func() {
		done <- Compact(ctx, f.target, CompactOptions{
			DrainOptions: DrainOptions{Spool: f.spool},
			Interval:     10 * time.Millisecond,
			OnDrain: func(r DrainReport) {
				mu.Lock()
				moved += r.Lines
				mu.Unlock()
			},
		})
	}()
	for i := range 50 {
		if _, err := j.AppendString(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A journal that appears later is picked up.
	late := f.openJournal(t, "late", nil)
	late.AppendString("late")
	waitFor(t, "Compact to move 51 lines", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return moved == 51
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if got := targetLines(t, f.target); len(got) != 51 {
		t.Fatalf("target has %d lines", len(got))
	}
	// An error that needs a human stops Compact and is returned.
	if err := os.WriteFile(f.target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j.AppendString("more")
	err := Compact(context.Background(), f.target, CompactOptions{DrainOptions: DrainOptions{Spool: f.spool}})
	wantKind(t, err, KindTargetTruncated)
}

// Compact sets a journal it cannot drain aside (reported once) and keeps draining
// the others; it stops when ctx is done. Before it ran the library's daemon, any error
// but a lock problem ended Compact.
func TestCompactSetsJunkAside(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "good", nil)
	if _, err := j.AppendBatch([][]byte{[]byte("one"), []byte("two")}); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(f.spool, "junk.journal")
	if err := os.WriteFile(junk, []byte("not an SQLite file, not even a little"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var events []CompactEvent
	var moved uint64
	err := Compact(ctx, f.target, CompactOptions{
		DrainOptions: DrainOptions{Spool: f.spool},
		Interval:     time.Millisecond,
		OnDrain:      func(r DrainReport) { moved += r.Lines },
		OnEvent: func(e CompactEvent) {
			events = append(events, e)
			setAside := 0
			for _, e := range events {
				if e.Type == EventSetAside {
					setAside++
				}
			}
			if moved == 2 && setAside > 0 { // a condition, not a time
				cancel()
			}
		},
	})
	if err != nil {
		t.Fatalf("Compact: %v", err)
	}
	var aside []CompactEvent
	for _, e := range events {
		if e.Type == EventSetAside {
			aside = append(aside, e)
		}
	}
	if len(aside) != 1 || aside[0].Kind != KindNotAJournal || !strings.HasSuffix(aside[0].Subject, "junk.journal") {
		t.Fatalf("want the junk journal set aside once, got %+v", events)
	}
	if got := targetLines(t, f.target); len(got) != 2 {
		t.Fatalf("target has %d lines", len(got))
	}
	// A panic in a callback stops the daemon and is raised again by Compact.
	j.AppendString("three")
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the callback's panic", p)
			}
		}()
		Compact(context.Background(), f.target, CompactOptions{
			DrainOptions: DrainOptions{Spool: f.spool},
			OnDrain:      func(DrainReport) { panic("boom") },
		})
		t.Fatal("Compact returned instead of panicking")
	}()
}

// Compact over a fixed set of journals runs the same daemon as over a spool: a
// missing journal is set aside (reported once) while the other drains, and is
// drained once it exists. Before it did (a loop of Drain calls in Go), the missing
// journal ended Compact with ErrNotAJournal.
func TestCompactJournalsSetsAMissingOneAsideUntilItAppears(t *testing.T) {
	f := newFixture(t)
	present := f.openJournal(t, "present", nil)
	if _, err := present.AppendString("first"); err != nil {
		t.Fatal(err)
	}
	later := filepath.Join(t.TempDir(), "later.journal")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var setAside []CompactEvent
	var moved uint64
	err := Compact(ctx, f.target, CompactOptions{
		DrainOptions: DrainOptions{Journals: []string{present.Path(), later}},
		Interval:     time.Millisecond,
		OnDrain: func(r DrainReport) {
			moved += r.Lines
			if moved == 2 { // a condition, not a time
				cancel()
			}
		},
		OnEvent: func(e CompactEvent) {
			if e.Type != EventSetAside {
				return
			}
			setAside = append(setAside, e)
			// The missing journal was reported: now it appears, with a line.
			j, err := OpenJournal(later, nil)
			if err != nil {
				t.Error(err)
				cancel()
				return
			}
			defer j.Close()
			if _, err := j.AppendString("second"); err != nil {
				t.Error(err)
			}
		},
	})
	if err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if len(setAside) != 1 || setAside[0].Kind != KindNotAJournal || !strings.HasSuffix(setAside[0].Subject, "later.journal") {
		t.Fatalf("want the missing journal set aside once, got %+v", setAside)
	}
	if got := targetLines(t, f.target); strings.Join(got, ",") != "first,second" {
		t.Fatalf("target has %q", got)
	}
}

// A cancelled ctx ends Compact while it waits for a lock held elsewhere (another
// host's round, a hung client): it used to return only when the lock came free or
// the lock timeout passed. Found by an outside tester.
func TestCompactCancelEndsTheWaitForALockHeldElsewhere(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "a", nil)
	if _, err := j.AppendString("waiting"); err != nil {
		t.Fatal(err)
	}
	lockPath := f.target + ".tributary/lock"
	defer holdLockElsewhere(t, lockPath)()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Compact(ctx, f.target, CompactOptions{
			DrainOptions: DrainOptions{Spool: f.spool, LockTimeout: time.Hour},
			Interval:     10 * time.Millisecond,
		})
	}()
	waitForLockWaiter(t, lockPath, "Compact")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Compact: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("a cancelled ctx did not end Compact's wait for the lock")
	}
	if got := targetLines(t, f.target); len(got) != 0 {
		t.Fatalf("committed %d lines while the lock was held elsewhere", len(got))
	}
}

// A one-shot Drain whose ctx is cancelled (no deadline) while another process holds
// the lock returns within the hang guard, with an error that is both a lock timeout
// and context.Canceled (it waited the whole LockTimeout before: an hour here).
func TestDrainCancelEndsTheWaitForALockHeldElsewhere(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "a", nil)
	if _, err := j.AppendString("waiting"); err != nil {
		t.Fatal(err)
	}
	cancelWhileLockHeldElsewhere(t, f, "Drain", func(ctx context.Context) error {
		_, err := Drain(ctx, f.target, DrainOptions{Journals: []string{j.Path()}, LockTimeout: time.Hour})
		return err
	})
	r, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{j.Path()}})
	if err != nil || r.Lines != 1 {
		t.Fatalf("Drain after the lock came free = %+v, %v", r, err)
	}
}

// A Retire whose ctx is cancelled while another process holds the lock returns within
// the hang guard, with an error that is both a lock timeout and context.Canceled,
// and deletes nothing: an outside tester's Retire waited out the holder after its
// context was cancelled, then deleted the journal and returned nil.
func TestRetireCancelEndsTheWaitForALockHeldElsewhere(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "a", nil)
	if _, err := j.AppendString("to retire"); err != nil {
		t.Fatal(err)
	}
	j.Close()
	cancelWhileLockHeldElsewhere(t, f, "Retire", func(ctx context.Context) error {
		_, err := Retire(ctx, f.target, DrainOptions{Journals: []string{j.Path()}, LockTimeout: time.Hour})
		return err
	})
	if _, err := os.Stat(j.Path()); err != nil {
		t.Fatalf("a cancelled Retire deleted the journal: %v", err)
	}
	n, err := Retire(context.Background(), f.target, DrainOptions{Journals: []string{j.Path()}})
	if err != nil || n != 1 {
		t.Fatalf("Retire after the lock came free = %d, %v", n, err)
	}
	if lines := targetLines(t, f.target); len(lines) != 1 || lines[0] != "to retire" {
		t.Fatalf("target after the retirement: %q", lines)
	}
}

// cancelWhileLockHeldElsewhere runs call (with an hour's lock timeout) while another
// process holds f's target lock, cancels its ctx once it waits for the lock, and
// checks that it returns within the hang guard with an error that is both a lock
// timeout and context.Canceled; the lock is free again when it returns.
func cancelWhileLockHeldElsewhere(t *testing.T, f fixture, who string, call func(context.Context) error) {
	t.Helper()
	lockPath := f.target + ".tributary/lock"
	release := holdLockElsewhere(t, lockPath)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	waitForLockWaiter(t, lockPath, who)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, context.Canceled) {
			t.Fatalf("%s cancelled while waiting for the lock: %v, want a lock timeout matching context.Canceled", who, err)
		}
		if !strings.Contains(err.Error(), "ended by the context: context canceled") {
			t.Fatalf("%s cancelled while waiting for the lock: %q does not say the context ended the wait", who, err)
		}
	case <-time.After(hangGuard):
		t.Fatalf("a cancelled ctx did not end %s's wait for the lock", who)
	}
}

// holdLockElsewhere takes the target's lock in another process (a POSIX record lock
// conflicts with the library's OFD lock) until the returned func is called.
func holdLockElsewhere(t *testing.T, lockPath string) (release func()) {
	t.Helper()
	return holdInPython(t, "f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX)", lockPath)
}

// holdInPython runs take (Python, with fcntl, sqlite3 and sys imported; argv[1] is
// path) in another process, returns once it has run, and keeps that process, and
// what it holds, until the returned func is called.
func holdInPython(t *testing.T, take, path string) (release func()) {
	t.Helper()
	holder := exec.Command("python3", "-c",
		"import fcntl,sqlite3,sys\n"+take+"\nprint('held', flush=True); sys.stdin.read()", path)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return func() { once.Do(func() { stdin.Close(); holder.Wait() }) }
}

// waitForLockWaiter waits until someone is blocked on the lock file (/proc/locks).
func waitForLockWaiter(t *testing.T, lockPath, who string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(lockPath, &st); err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf(":%d ", st.Ino)
	waitFor(t, who+" to wait for the lock", func() bool {
		locks, _ := os.ReadFile("/proc/locks")
		for _, l := range strings.Split(string(locks), "\n") {
			if strings.Contains(l, "->") && strings.Contains(l, suffix) {
				return true
			}
		}
		return false
	})
}
