package tributary

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain runs the tests, or, in a child process that a test started with
// TRIB_GO_HELPER set, that helper.
func TestMain(m *testing.M) {
	switch os.Getenv("TRIB_GO_HELPER") {
	case "":
		os.Exit(m.Run())
	case "drain":
		helperDrain()
		os.Exit(0)
	case "slog-logger":
		helperSlogLogger()
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown TRIB_GO_HELPER", os.Getenv("TRIB_GO_HELPER"))
		os.Exit(2)
	}
}

// repoRoot is the tributary checkout this package lives in.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// cliPath is the `tributary` CLI: $TRIBUTARY_CLI, or the repository's release build.
func cliPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("TRIBUTARY_CLI"); p != "" {
		return p
	}
	p := filepath.Join(repoRoot(t), "target", "release", "tributary")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the tributary CLI is needed: %v (run `cargo build --release` in %s, or set TRIBUTARY_CLI)",
			err, repoRoot(t))
	}
	return p
}

// fixture is a folder with a spool and a target.
type fixture struct {
	dir, spool, target string
}

// newFixture is a folder with a spool and a target created with Init, as an
// application's setup does once (drains never create a target).
func newFixture(t testing.TB) fixture {
	t.Helper()
	f := newBareFixture(t)
	if r := f.init(t); !r.Created {
		t.Fatalf("Init of a new target: %+v", r)
	}
	return f
}

// newBareFixture is a folder with a spool and the path of a target that was never
// initialised: nothing exists at f.target yet.
func newBareFixture(t testing.TB) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{dir: dir, spool: filepath.Join(dir, "spool"), target: filepath.Join(dir, "out.log")}
	if err := os.Mkdir(f.spool, 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// init creates (or checks) f.target with Init.
func (f fixture) init(t testing.TB) InitReport {
	t.Helper()
	r, err := Init(context.Background(), f.target)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return r
}

// sidecar is the target's sidecar folder, "<target>.tributary".
func sidecar(target string) string { return target + ".tributary" }

// entries lists a folder's names (sorted), to check that nothing was created in it.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func (f fixture) journalPath(name string) string {
	return filepath.Join(f.spool, name+".journal")
}

func (f fixture) openJournal(t testing.TB, name string, opts *JournalOptions) *Journal {
	t.Helper()
	j, err := OpenJournal(f.journalPath(name), opts)
	if err != nil {
		t.Fatalf("OpenJournal(%s): %v", name, err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func (f fixture) drain(t testing.TB) DrainReport {
	t.Helper()
	r, err := Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	return r
}

// targetLines is the target's content split into lines (it must end with '\n').
func targetLines(t testing.TB, target string) []string {
	t.Helper()
	b, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("target %s does not end with a newline", target)
	}
	var out []string
	for _, l := range bytes.Split(b[:len(b)-1], []byte{'\n'}) {
		out = append(out, string(l))
	}
	return out
}

func mustConsistent(t testing.TB, target string) VerifyReport {
	t.Helper()
	v, err := Verify(target)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !v.Consistent {
		t.Fatalf("Verify: target inconsistent: %v", v.Problems)
	}
	return v
}

// wantKind checks that err is an *Error of kind k matching sentinel (and, via
// errors.Is, none of the other kinds' sentinels).
func wantKind(t testing.TB, err error, k ErrorKind) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %v error, got nil", k)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want an *Error of kind %v, got %T: %v", k, err, err)
	}
	if e.Kind != k {
		t.Fatalf("want kind %v, got %v: %v", k, e.Kind, err)
	}
	if e.Message == "" {
		t.Fatalf("error of kind %v has no message", k)
	}
	for kind, s := range kindSentinels {
		if got := errors.Is(err, s); got != (kind == k) {
			t.Fatalf("errors.Is(err, %v) = %v for an error of kind %v: %v", s, got, k, err)
		}
	}
	corrupt := k == KindCorruptManifest || k == KindCorruptJournalRow
	if errors.Is(err, ErrCorrupt) != corrupt {
		t.Fatalf("errors.Is(err, ErrCorrupt) = %v for kind %v", !corrupt, k)
	}
	return e
}

// runCLI runs the tributary CLI and returns its combined output.
func runCLI(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command(cliPath(t), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tributary %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// hangGuard bounds every wait for a condition in these tests. It only turns a hang
// into a failure: no test expects anything to be fast (CI machines are loaded), so it
// is far longer than any wait that succeeds.
const hangGuard = 5 * time.Minute

// waitFor polls cond until it holds; it fails the test only if cond still does not
// hold after hangGuard (something hangs).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v: something hangs", what, hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitReached waits until a process run with TRIBUTARY_FAILPOINTS=<point>=hold and
// TRIBUTARY_FAILPOINT_DIR=dir has reached point: it then holds there until the test
// removes the returned <point>.reached file. exited, if not nil, is closed when the
// process exits (it would never reach the point then).
func waitReached(t testing.TB, dir, point string, exited <-chan struct{}, output func() string) string {
	t.Helper()
	reached := filepath.Join(dir, point+".reached")
	waitFor(t, "the process to reach failpoint "+point, func() bool {
		select {
		case <-exited: // a nil channel never is
			t.Fatalf("the process exited before reaching failpoint %s:\n%s", point, output())
		default:
		}
		_, err := os.Stat(reached)
		return err == nil
	})
	return reached
}

// goroutineID is the calling goroutine's id, as stack traces print it.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)] // "goroutine 18 [running]:\n..."
	return strings.Fields(string(buf))[1]
}

// waitInside waits until a goroutine that the calling goroutine started is inside
// function fn (a frame of its stack names fn): a condition read from the goroutines'
// stacks, so that a test knows a call is under way without assuming that it is "by
// now". For a cgo call (fn "_Cfunc_trib_..."), the goroutine must be in the C code
// already (its state is "syscall" there).
func waitInside(t testing.TB, fn string) {
	t.Helper()
	createdHere := " in goroutine " + goroutineID() + "\n"
	state := "goroutine "
	if strings.HasPrefix(fn, "_Cfunc_") {
		state = " [syscall"
	}
	waitFor(t, "a goroutine of this test to be inside "+fn, func() bool {
		buf := make([]byte, 1<<16)
		for {
			n := runtime.Stack(buf, true)
			if n < len(buf) {
				buf = buf[:n]
				break
			}
			buf = make([]byte, 2*len(buf))
		}
		for _, g := range strings.Split(string(buf), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(header, state) && strings.Contains(g, createdHere) && strings.Contains(g, "."+fn+"(") {
				return true
			}
		}
		return false
	})
}

// await receives the result of a call that a goroutine of the test runs; it fails
// the test only if none comes within hangGuard (the call hangs).
func await[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("%s still has not returned after %v: it hangs", what, hangGuard)
		panic("unreachable")
	}
}

// drainTakingTurns is Drain for tests in which other compactors compete for the
// target's lock: a lock timeout (another compactor held the lock through the whole
// LockTimeout, which a loaded machine makes possible) is retried until ctx is done,
// as Compact and the daemon retry it.
func drainTakingTurns(ctx context.Context, target string, opts DrainOptions) (DrainReport, error) {
	for {
		r, err := Drain(ctx, target, opts)
		if !errors.Is(err, ErrLockTimeout) || ctx.Err() != nil {
			return r, err
		}
	}
}
