package tributary

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every error kind the library can report is provoked for real below, through this
// package's API, and checked with errors.Is (its own sentinel only) and errors.As.
// One file (~680 lines) on purpose: one test per kind, in the order of the kind table,
// so a missing kind shows as a gap here.

// A duration option of "forever", time.Duration(math.MaxInt64) (292 years), is taken
// as it is; its conversion to milliseconds overflowed into a negative number the
// library refused with "`full_wait_ms` is 18446734850337514763 ms" (an outside
// tester). Milliseconds round up, so a positive duration never becomes 0.
func TestDurationsNearForeverConvertWithoutOverflow(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want uint64
	}{
		{0, 0}, {1, 1}, {time.Millisecond, 1}, {time.Millisecond + 1, 2},
		{time.Duration(math.MaxInt64), uint64(math.MaxInt64/int64(time.Millisecond)) + 1},
	} {
		if got, err := millis("test", "d", c.d); err != nil || uint64(got) != c.want {
			t.Errorf("millis(%v) = %d, %v; want %d", c.d, uint64(got), err, c.want)
		}
	}
	f := newFixture(t)
	j, err := OpenJournal(f.journalPath("forever"), &JournalOptions{FullWait: time.Duration(math.MaxInt64)})
	if err != nil {
		t.Fatalf("FullWait of math.MaxInt64: %v", err)
	}
	j.Close()
}

func TestErrorType(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "e", nil)
	_, err := j.Append([]byte("a\nb"))
	e := wantKind(t, err, KindInvalidLine)
	if e.Op != "append" || e.LineIndex != 0 {
		t.Fatalf("Op %q, LineIndex %d", e.Op, e.LineIndex)
	}
	if !strings.HasPrefix(err.Error(), "tributary: append: invalid line") {
		t.Fatalf("Error() = %q", err.Error())
	}
	if !strings.Contains(e.Message, "newline") {
		t.Fatalf("Message = %q", e.Message)
	}
	// Sentinels print as themselves.
	if ErrJournalFull.Error() != "tributary: journal full" {
		t.Fatalf("ErrJournalFull = %q", ErrJournalFull)
	}
	// Wrapped further, the error still matches.
	wrapped := fmt.Errorf("writing the audit log: %w", err)
	if !errors.Is(wrapped, ErrInvalidLine) {
		t.Fatal("a wrapped error does not match its sentinel")
	}
	var e2 *Error
	if !errors.As(wrapped, &e2) || e2 != e {
		t.Fatal("errors.As through a wrapper")
	}
}

func TestErrInvalidLine(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "l", &JournalOptions{MaxLineBytes: 16})
	for name, line := range map[string]string{
		"newline":           "two\nlines",
		"trailing newline":  "line\n",
		"oversized":         strings.Repeat("x", 17),
		"oversized by much": strings.Repeat("x", 1<<20),
	} {
		_, err := j.AppendString(name + ":" + line)
		e := wantKind(t, err, KindInvalidLine)
		if e.LineIndex != 0 {
			t.Errorf("%s: LineIndex %d", name, e.LineIndex)
		}
	}
	// In a batch, LineIndex says which line; nothing of the batch is stored.
	_, err := j.AppendBatch([][]byte{[]byte("ok"), []byte("ok too"), []byte("bad\n"), []byte("ok")})
	if e := wantKind(t, err, KindInvalidLine); e.LineIndex != 2 || e.Op != "append batch" {
		t.Fatalf("batch: LineIndex %d, Op %q", e.LineIndex, e.Op)
	}
	_, err = j.AppendKeyed([]byte("k"), []byte("bad\nline"))
	wantKind(t, err, KindInvalidLine)
	if b, _ := j.Backlog(); b.Lines != 0 || b.LastSeq != 0 {
		t.Fatalf("refused lines were stored: %+v", b)
	}
}

func TestErrInvalidArgument(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "a", nil)
	j.AppendString("one line")
	f.drain(t)
	bg := context.Background()
	cases := map[string]func() error{
		"empty batch":       func() error { _, err := j.AppendBatch(nil); return err },
		"empty key":         func() error { _, err := j.AppendKeyed(nil, []byte("x")); return err },
		"bad durability":    func() error { _, err := OpenJournal(f.journalPath("d"), &JournalOptions{Durability: 7}); return err },
		"negative max line": func() error { _, err := OpenJournal(f.journalPath("n"), &JournalOptions{MaxLineBytes: -1}); return err },
		"negative duration": func() error {
			_, err := OpenJournal(f.journalPath("n"), &JournalOptions{FullWait: -time.Second})
			return err
		},
		"huge busy timeout": func() error {
			_, err := OpenJournal(f.journalPath("b"), &JournalOptions{BusyTimeout: 1000 * time.Hour})
			return err
		},
		"empty journal path": func() error { _, err := OpenJournal("", nil); return err },
		"NUL in path":        func() error { _, err := OpenJournal(f.journalPath("x\x00y"), nil); return err },
		"journals and spool": func() error {
			_, err := Drain(bg, f.target, DrainOptions{Journals: []string{j.Path()}, Spool: f.spool})
			return err
		},
		"empty target":         func() error { _, err := Drain(bg, "", DrainOptions{}); return err },
		"NUL in journal path":  func() error { _, err := Drain(bg, f.target, DrainOptions{Journals: []string{"a\x00"}}); return err },
		"negative lock wait":   func() error { _, err := Drain(bg, f.target, DrainOptions{LockTimeout: -1}); return err },
		"verify, no manifest":  func() error { _, err := Verify(filepath.Join(f.dir, "never-drained.log")); return err },
		"init, empty target":   func() error { _, err := Init(bg, ""); return err },
		"init, NUL in target":  func() error { _, err := Init(bg, f.target+"\x00"); return err },
		"reader beyond end":    func() error { _, err := OpenReader(f.target, 1000); return err },
		"reader mid-line":      func() error { _, err := OpenReader(f.target, 3); return err },
		"reader negative":      func() error { _, err := OpenReader(f.target, -1); return err },
		"status, empty target": func() error { _, err := Status("", ""); return err },
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) { wantKind(t, call(), KindInvalidArgument) })
	}
}

func TestErrJournalFull(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "full", &JournalOptions{MaxBacklogBytes: 10})
	if _, err := j.AppendString("12345678"); err != nil {
		t.Fatal(err)
	}
	_, err := j.AppendString("12345678")
	wantKind(t, err, KindJournalFull)
	// Nothing was stored; after a drain there is room again.
	f.drain(t)
	if _, err := j.AppendString("12345678"); err != nil {
		t.Fatalf("after a drain: %v", err)
	}
	// With FullWait, an append waits for a drain to make room. The append starts
	// first, on a full journal: once it is inside the library it can only wait, as
	// nothing drains that journal until the Drain below (no sleep, no elapsed time:
	// FullWait is only a hang guard).
	jw := f.openJournal(t, "wait", &JournalOptions{MaxBacklogBytes: 10, FullWait: hangGuard})
	if _, err := jw.AppendString("12345678"); err != nil {
		t.Fatal(err)
	}
	type appendResult struct {
		seq uint64
		err error
	}
	appended := make(chan appendResult, 1)
	go func() {
		seq, err := jw.AppendString("abcdefgh")
		appended <- appendResult{seq, err}
	}()
	waitInside(t, "_Cfunc_trib_journal_append")
	select {
	case r := <-appended:
		t.Fatalf("an append into a full journal returned before any drain made room: %d, %v", r.seq, r.err)
	default:
	}
	if r, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{jw.Path()}}); err != nil || r.Lines != 1 {
		t.Fatalf("the drain that makes room: %+v, %v", r, err)
	}
	r := <-appended
	if r.err != nil || r.seq != 2 {
		t.Fatalf("append with FullWait: %d, %v", r.seq, r.err)
	}
	// The room came from the drain: it took line 1, the waiting line is line 2.
	if b, err := jw.Backlog(); err != nil || b.DrainedSeq != 1 || b.LastSeq != 2 || b.Lines != 1 {
		t.Fatalf("after the waiting append: %+v, %v", b, err)
	}
}

// holdLock starts a `tributary drain` of its own journal into target that holds the
// target's lock, after writing and fsyncing its round (failpoint
// drain.after_fsync=hold), until release is called; it returns once the lock is held.
// release lets the drain go on and waits for it to succeed.
func holdLock(t *testing.T, f fixture) (release func()) {
	t.Helper()
	fp := filepath.Join(f.dir, "holder-failpoints")
	if err := os.Mkdir(fp, 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(f.dir, "holder.journal")
	runCLI(t, []byte("held\n"), "append", "--journal", other)
	cmd := exec.Command(cliPath(t), "drain", "--target", f.target, "--journal", other)
	cmd.Env = append(os.Environ(), "TRIBUTARY_FAILPOINTS=drain.after_fsync=hold", "TRIBUTARY_FAILPOINT_DIR="+fp)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	reached := waitReached(t, fp, "drain.after_fsync", exited, out.String)
	// Held after its fsync: the target holds bytes the manifest does not cover yet.
	if st, err := Status(f.target, ""); err != nil || !st.HasManifest || st.TargetLen <= st.CommittedLen {
		t.Fatalf("the held drain wrote nothing: %+v, %v", st, err)
	}
	return func() {
		t.Helper()
		if err := os.Remove(reached); err != nil {
			t.Fatal(err)
		}
		<-exited
		if waitErr != nil {
			t.Fatalf("the CLI drain failed: %v\n%s", waitErr, out.String())
		}
	}
}

// lockTimeoutWaited is how long a lock timeout error says the library waited for the
// lock, in milliseconds ("... was not granted within N ms ...").
func lockTimeoutWaited(t *testing.T, e *Error) int {
	t.Helper()
	_, rest, ok := strings.Cut(e.Message, "not granted within ")
	var ms int
	if !ok {
		t.Fatalf("a lock timeout that does not say how long it waited: %q", e.Message)
	}
	if _, err := fmt.Sscanf(rest, "%d ms", &ms); err != nil {
		t.Fatalf("a lock timeout that does not say how long it waited: %q (%v)", e.Message, err)
	}
	return ms
}

// defaultLockTimeoutMs is the library's lock timeout when none is given (30 s).
const defaultLockTimeoutMs = 30_000

func TestErrLockTimeout(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "mine", nil)
	j.AppendString("mine")
	release := holdLock(t, f) // held until release: every Drain below times out

	_, err := Drain(context.Background(), f.target, DrainOptions{Spool: f.spool, LockTimeout: 200 * time.Millisecond})
	e := wantKind(t, err, KindLockTimeout)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("a lock timeout from LockTimeout matches context.DeadlineExceeded")
	}
	// The library says how long it waited: all of LockTimeout, and not the 30 s
	// default. (A wait for the default cannot end before 30 s, however idle or
	// loaded the machine: the bound tells the two apart, it does not time the call.)
	if waited := lockTimeoutWaited(t, e); waited < 200 || waited >= defaultLockTimeoutMs {
		t.Fatalf("with LockTimeout 200ms the library waited %d ms: %v", waited, err)
	}

	// A context deadline shortens the (default 30 s) lock wait: the lock timeout
	// matches context.DeadlineExceeded too. (If the machine is so loaded that the
	// deadline passes before Drain even starts, Drain returns ctx.Err() without
	// calling the library: try again with a new deadline.)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err = Drain(ctx, f.target, DrainOptions{Spool: f.spool})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, new(*Error)) {
			break
		}
		t.Logf("the deadline passed before Drain started: %v; again", err)
	}
	e = wantKind(t, err, KindLockTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a lock timeout cut short by the deadline does not match context.DeadlineExceeded: %v", err)
	}
	if waited := lockTimeoutWaited(t, e); waited >= defaultLockTimeoutMs {
		t.Fatalf("with a 300ms deadline the library waited %d ms: %v", waited, err)
	}

	// Once the holder is done, the lines arrive exactly once.
	release()
	if r, err := Drain(context.Background(), f.target, DrainOptions{Spool: f.spool}); err != nil || r.Lines != 1 {
		t.Fatalf("Drain after the holder: %+v, %v", r, err)
	}
	if got := strings.Join(targetLines(t, f.target), ","); got != "held,mine" {
		t.Fatalf("target = %q", got)
	}
}

// The lost-lock check: a drain in a child process (this test binary) loses its lock
// after writing and fsyncing its round, before committing it (failpoint
// drain.lose_lock=hold, read by the library from the child's environment: the lock
// goes, as with an expired lease or a remounted share, and the child holds until the
// test removes its .reached file). Meanwhile another drain takes the lock, cuts the
// child's bytes and commits. The child's Drain must fail with ErrLockLost and commit
// nothing; its line arrives exactly once afterwards.
func TestErrLockLost(t *testing.T) {
	f := newFixture(t)
	fp := filepath.Join(f.dir, "failpoints")
	if err := os.Mkdir(fp, 0o755); err != nil {
		t.Fatal(err)
	}
	j := f.openJournal(t, "j", nil) // in the spool: the child drains it
	j.AppendString("from the drain that lost its lock")
	otherPath := filepath.Join(f.dir, "other.journal")
	other, err := OpenJournal(otherPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.AppendString("from the other drain")

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		"TRIB_GO_HELPER=drain", "TRIB_GO_TARGET="+f.target, "TRIB_GO_SPOOL="+f.spool,
		"TRIBUTARY_FAILPOINTS=drain.lose_lock=hold", "TRIBUTARY_FAILPOINT_DIR="+fp)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	reached := waitReached(t, fp, "drain.lose_lock", exited, out.String)
	// "Another compactor" takes the lock (free: the child lost it) and commits.
	r, err := Drain(context.Background(), f.target, DrainOptions{Journals: []string{otherPath}})
	if rmErr := os.Remove(reached); rmErr != nil { // let the child go on
		t.Fatal(rmErr)
	}
	if err != nil || r.Lines != 1 {
		t.Fatalf("the other drain: %+v, %v", r, err)
	}
	<-exited
	if waitErr != nil {
		t.Fatalf("helper: %v\n%s", waitErr, out.String())
	}
	if !strings.Contains(out.String(), "HELPER kind=lock_lost lock_lost=true") {
		t.Fatalf("the child's Drain did not fail with ErrLockLost:\n%s", out.String())
	}
	// The child committed nothing: its line is still in its journal, and arrives once.
	if b, _ := j.Backlog(); b.Lines != 1 || b.DrainedSeq != 0 {
		t.Fatalf("after the lost lock, the child's journal: %+v", b)
	}
	if r := f.drain(t); r.Lines != 1 {
		t.Fatalf("the drain after: %+v", r)
	}
	if got := strings.Join(targetLines(t, f.target), ","); got != "from the other drain,from the drain that lost its lock" {
		t.Fatalf("target = %q", got)
	}
	mustConsistent(t, f.target)
}

// helperDrain is the child process of TestErrLockLost (see TestMain).
func helperDrain() {
	_, err := Drain(context.Background(), os.Getenv("TRIB_GO_TARGET"), DrainOptions{Spool: os.Getenv("TRIB_GO_SPOOL")})
	var e *Error
	kind := "none"
	if errors.As(err, &e) {
		kind = e.Kind.String()
	}
	fmt.Printf("HELPER kind=%s lock_lost=%v err=%v\n", kind, errors.Is(err, ErrLockLost), err)
}

func TestErrCorruptManifest(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("a line")
	f.drain(t)
	// The manifest lives in two CRC-checked slots of the lock file (slot A at 0,
	// slot B at 2 MiB; each a 16-byte header, then the text). A damaged slot falls
	// back to the other one, so damage both, as a failing disk or a bad copy would.
	lock := filepath.Join(sidecar(f.target), "lock")
	fh, err := os.OpenFile(lock, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int64{16 + 20, 2<<20 + 16 + 20} {
		b := make([]byte, 1)
		if _, err := fh.ReadAt(b, at); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x01
		if _, err := fh.WriteAt(b, at); err != nil {
			t.Fatal(err)
		}
	}
	fh.Close()
	b, err := os.ReadFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	j.AppendString("another")
	_, err = Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	wantKind(t, err, KindCorruptManifest)
	_, err = Verify(f.target)
	wantKind(t, err, KindCorruptManifest)
	_, err = Status(f.target, "")
	wantKind(t, err, KindCorruptManifest)
	_, err = OpenReader(f.target, 0)
	wantKind(t, err, KindCorruptManifest)
	// Never silently replaced.
	if now, _ := os.ReadFile(lock); string(now) != string(b) {
		t.Fatal("the corrupt manifest was replaced")
	}
}

func TestErrCorruptJournalRow(t *testing.T) {
	sqlite3, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("the sqlite3 command-line tool is not installed: cannot tamper a journal row " +
			"(apt-get install sqlite3)")
	}
	f := newFixture(t)
	j, err := OpenJournal(f.journalPath("j"), nil)
	if err != nil {
		t.Fatal(err)
	}
	j.AppendString("hello")
	j.Close()
	// Same length, other bytes: the row's stored CRC no longer matches ("jello\n").
	cmd := exec.Command(sqlite3, f.journalPath("j"), "UPDATE runs SET data = X'6a656c6c6f0a' WHERE first_seq = 1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	_, err = Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	e := wantKind(t, err, KindCorruptJournalRow)
	if !strings.Contains(e.Message, "seq 1") {
		t.Fatalf("the message does not name the seq: %q", e.Message)
	}
	// A missing row is a corrupt row too.
	f2 := newFixture(t)
	j2, _ := OpenJournal(f2.journalPath("j"), nil)
	j2.AppendString("one")
	j2.AppendString("two")
	j2.Close()
	cmd = exec.Command(sqlite3, f2.journalPath("j"), "DELETE FROM runs WHERE first_seq = 1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	_, err = Drain(context.Background(), f2.target, DrainOptions{Spool: f2.spool})
	wantKind(t, err, KindCorruptJournalRow)
}

func TestErrTargetTruncated(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("first line")
	j.AppendString("second line")
	f.drain(t)
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.Truncate(f.target, 5); err != nil { // logrotate copytruncate, say
		t.Fatal(err)
	}
	j.AppendString("third")
	_, err = Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	wantKind(t, err, KindTargetTruncated)
	_, _, err = r.TryNext()
	wantKind(t, err, KindTargetTruncated)
}

func TestErrUnexpectedTail(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("a")
	f.drain(t)
	// A foreign writer appends a whole line: no drain round announced those bytes, so
	// the drain refuses to cut them (or write after them) and touches nothing.
	fh, err := os.OpenFile(f.target, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString("a foreign line\n")
	fh.Close()
	j.AppendString("b")
	_, err = Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	e := wantKind(t, err, KindUnexpectedTail)
	if !strings.Contains(e.Message, "Nothing was touched") {
		t.Fatalf("Message = %q", e.Message)
	}
	if got := strings.Join(targetLines(t, f.target), ","); got != "a,a foreign line" {
		t.Fatalf("target = %q", got)
	}
	if b, _ := j.Backlog(); b.Lines != 1 {
		t.Fatalf("the refused line left its journal: %+v", b)
	}
	v, err := Verify(f.target)
	if err != nil || v.Consistent || v.UncommittedTailBytes != 15 {
		t.Fatalf("Verify = %+v, %v; want inconsistent with a 15-byte foreign tail", v, err)
	}
}

func TestErrTornTarget(t *testing.T) {
	f := newBareFixture(t)
	// A pre-existing target whose last line is partial cannot be adopted.
	if err := os.WriteFile(f.target, []byte("complete\npartial"), 0o644); err != nil {
		t.Fatal(err)
	}
	j := f.openJournal(t, "j", nil)
	j.AppendString("a")
	_, err := Init(context.Background(), f.target)
	wantKind(t, err, KindTornTarget)
	_, err = Drain(context.Background(), f.target, DrainOptions{Spool: f.spool, Create: true})
	wantKind(t, err, KindTornTarget)
	// Once the line is finished, Init adopts both lines.
	if err := os.WriteFile(f.target, []byte("complete\nfinished\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := f.init(t); !r.Created || r.AdoptedLines != 2 {
		t.Fatalf("Init = %+v", r)
	}
}

func TestErrJournalRestored(t *testing.T) {
	f := newFixture(t)
	path := f.journalPath("j")
	j, err := OpenJournal(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	j.AppendString("a")
	j.Close() // checkpoints the WAL into the file
	backup, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, _ = OpenJournal(path, nil)
	j.AppendString("b")
	j.Close()
	f.drain(t)
	// Restore the older copy: its highest seq is below the target's watermark.
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
	if err := os.WriteFile(path, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	wantKind(t, err, KindJournalRestored)
}

func TestErrJournalForeign(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("a")
	f.drain(t)
	j.AppendString("b")
	other := filepath.Join(f.dir, "other.log")
	if _, err := Init(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	_, err := Drain(context.Background(), other, DrainOptions{Spool: f.spool})
	wantKind(t, err, KindJournalForeign)
}

func TestErrUnsafeFilesystem(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("a")
	f.drain(t)
	// A world-writable sidecar would let anyone plant a manifest.
	if err := os.Chmod(sidecar(f.target), 0o777); err != nil {
		t.Fatal(err)
	}
	j.AppendString("b")
	_, err := Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	wantKind(t, err, KindUnsafeFilesystem)
}

func TestErrNotAJournal(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.journal")
	os.WriteFile(text, []byte("these are notes, not a journal\n"), 0o600)
	_, err := OpenJournal(text, nil)
	wantKind(t, err, KindNotAJournal)
	_, err = Drain(context.Background(), filepath.Join(dir, "out.log"), DrainOptions{Journals: []string{text}})
	wantKind(t, err, KindNotAJournal)
}

func TestErrIO(t *testing.T) {
	dir := t.TempDir()
	// A journal whose folder does not exist.
	_, err := OpenJournal(filepath.Join(dir, "no-such-folder", "a.journal"), nil)
	wantKind(t, err, KindIO)
	// A spool folder that does not exist.
	f := newFixture(t)
	_, err = Drain(context.Background(), f.target, DrainOptions{Spool: filepath.Join(dir, "no-such-spool")})
	wantKind(t, err, KindIO)
	// A directory where the journal file should be is not a journal (an existing path
	// is never opened outside SQLite, so this is no longer an EISDIR I/O error).
	os.Mkdir(filepath.Join(dir, "dir.journal"), 0o755)
	_, err = OpenJournal(filepath.Join(dir, "dir.journal"), nil)
	wantKind(t, err, KindNotAJournal)
}

// A target never initialised, in a folder that exists or not (is the shared
// filesystem mounted?): ErrTargetMissing, and nothing is created. (init_test.go has
// the details.)
func TestErrTargetMissing(t *testing.T) {
	f := newBareFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("a")
	for _, target := range []string{f.target, filepath.Join(f.dir, "not-mounted", "out.log")} {
		_, err := Drain(context.Background(), target, DrainOptions{Spool: f.spool})
		e := wantKind(t, err, KindTargetMissing)
		if e.Op != "drain" || !strings.Contains(e.Message, "tributary init") {
			t.Fatalf("Op %q, Message %q", e.Op, e.Message)
		}
	}
	if got := entries(t, f.dir); fmt.Sprint(got) != "[spool]" {
		t.Fatalf("the folder holds %q after refused drains", got)
	}
}

func TestErrDamagedJournalIsCorruptJournalRow(t *testing.T) {
	f := newFixture(t)
	path := f.journalPath("j")
	j, err := OpenJournal(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		j.AppendString(fmt.Sprint("line ", i))
	}
	j.Close()
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Fatal("the WAL is still there after Close; the damage below would not be seen")
	}
	// Keep SQLite's header page, smash every later page (the tables' b-trees): a
	// disk error of the kind a failing local disk produces.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(b[16])<<8 | int(b[17])
	if pageSize == 1 {
		pageSize = 65536
	}
	if len(b) < 2*pageSize {
		t.Fatalf("journal is only %d bytes (page size %d)", len(b), pageSize)
	}
	for i := pageSize; i < len(b); i++ {
		b[i] = 0xff
	}
	os.WriteFile(path, b, 0o600)
	j, err = OpenJournal(path, nil)
	if err == nil {
		defer j.Close()
		_, err = j.AppendString("after the damage")
	}
	// SQLite finds the file damaged: not a transient SQLite error to retry
	e := wantKind(t, err, KindCorruptJournalRow)
	if !strings.Contains(e.Message, "retrying will not help") {
		t.Fatalf("Message = %q", e.Message)
	}
}

// An SQLite error that is SQLite's own trouble, not damage: another process holds the
// journal's write lock past this handle's busy timeout.
func TestErrSQLite(t *testing.T) {
	f := newFixture(t)
	path := f.journalPath("j")
	j, err := OpenJournal(path, &JournalOptions{BusyTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.AppendString("before"); err != nil {
		t.Fatal(err)
	}
	release := holdInPython(t, "c=sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN IMMEDIATE')", path)
	_, err = j.AppendString("while locked")
	release()
	wantKind(t, err, KindSQLite)
	if _, err := j.AppendString("after"); err != nil {
		t.Fatalf("append after the lock was released: %v", err)
	}
}

// The library panics on purpose inside trib_debug_panic: the panic is caught at the
// C boundary and comes back as an error, and the process keeps running, its library
// too. Rust's panic hook reports every panic on stderr, caught or not (with a
// backtrace when RUST_BACKTRACE is set), and that report does not belong in the output
// of a passing run: the panic happens in a child process (this test binary, running
// this test alone), whose output this test captures and checks.
func TestErrPanic(t *testing.T) {
	if os.Getenv("TRIB_GO_PANIC_CHILD") == "1" {
		err := debugPanic()
		e := wantKind(t, err, KindPanic)
		if !strings.Contains(e.Message, "panic") {
			t.Fatalf("Message = %q", e.Message)
		}
		// The library still works after the panic.
		f := newFixture(t)
		j := f.openJournal(t, "after-the-panic", nil)
		if _, err := j.AppendString("after the panic"); err != nil {
			t.Fatalf("append after the panic: %v", err)
		}
		if r := f.drain(t); r.Lines != 1 {
			t.Fatalf("drain after the panic: %+v", r)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestErrPanic$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "TRIB_GO_PANIC_CHILD=1", "TRIB_GO_HELPER=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the child test failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"trib_debug_panic was called", // the panic hook's report: a real panic, caught
		"--- PASS: TestErrPanic",      // the child's checks, after the panic
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the child's output lacks %q:\n%s", want, out)
		}
	}
}
