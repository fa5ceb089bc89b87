package tributary

import (
	"bytes"
	"context"
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

// pythonWriter appends "<name> <i>" for i in 0..count-1 to a journal, with the
// Python package of bindings/python if it imports, else with ctypes straight on the
// C ABI. It prints which one it used.
const pythonWriter = `
import ctypes, os, sys

path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [("%s %d" % (name, i)).encode() for i in range(count)]

try:
    import tributary
    j = tributary.Journal(path)
    for i, line in enumerate(lines):
        if i % 50 == 10:
            j.append_many(lines[i:i + 1])
        else:
            j.append(line)
    j.close()
    print("python writer: the tributary package (bindings/python), library", tributary.LIB_PATH)
except ImportError as e:
    lib = ctypes.CDLL(os.environ["TRIBUTARY_LIB"])
    lib.trib_journal_open.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                      ctypes.POINTER(ctypes.c_void_p)]
    lib.trib_journal_append.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_void_p)]
    lib.trib_journal_close.argtypes = [ctypes.c_void_p]
    lib.trib_error_message.argtypes = [ctypes.c_void_p]
    lib.trib_error_message.restype = ctypes.c_char_p
    err = ctypes.c_void_p()
    def check(rc):
        if rc != 0:
            sys.exit("python writer: error %d: %s" % (rc, lib.trib_error_message(err).decode()))
    j = ctypes.c_void_p()
    check(lib.trib_journal_open(path.encode(), None, ctypes.byref(j), ctypes.byref(err)))
    seq = ctypes.c_uint64()
    for line in lines:
        check(lib.trib_journal_append(j, line, len(line), ctypes.byref(seq), ctypes.byref(err)))
    lib.trib_journal_close(j)
    print("python writer: ctypes on the C ABI (the tributary package did not import: %s)" % e)
`

// A Rust writer (the tributary CLI), a Python writer and a Go writer feed one target
// at the same time, while a Go drain loop and a Rust compactor (`tributary
// compact`) race for the target's lock; every line ends up in it exactly once.
func TestCrossLanguageWriters(t *testing.T) {
	const count = 400
	f := newBareFixture(t)
	cli := cliPath(t)
	// The target is created once, by the Rust CLI; the Go side accepts it as it is.
	if out := runCLI(t, nil, "init", "--target", f.target); !strings.Contains(out, "created target") {
		t.Fatalf("tributary init: %s", out)
	}
	if r := f.init(t); r.Created {
		t.Fatalf("Init after `tributary init`: %+v", r)
	}
	lib := filepath.Join(repoRoot(t), "target", "release", "libtributary.so")
	if p := os.Getenv("TRIBUTARY_LIB"); p != "" {
		lib = p
	}
	python, pyErr := exec.LookPath("python3")
	writers := []string{"go", "rust"}
	if pyErr == nil {
		writers = append(writers, "python")
	} else {
		t.Logf("python3 is not installed: the Python writer is left out of this test (%v)", pyErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	// The Rust compactor runs throughout; stopped with SIGTERM at the end.
	compactor := exec.Command(cli, "compact", "--target", f.target, "--spool", f.spool, "--interval", "20")
	var compactorOut bytes.Buffer
	compactor.Stdout, compactor.Stderr = &compactorOut, &compactorOut
	if err := compactor.Start(); err != nil {
		t.Fatal(err)
	}
	defer compactor.Process.Kill()

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(1)
	go func() { // Go
		defer wg.Done()
		j, err := OpenJournal(f.journalPath("go"), nil)
		if err != nil {
			errs <- err
			return
		}
		defer j.Close()
		for i := range count {
			if _, err := j.AppendString(fmt.Sprintf("go %d", i)); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Add(1)
	go func() { // Rust: the CLI appends its stdin's lines
		defer wg.Done()
		var in bytes.Buffer
		for i := range count {
			fmt.Fprintf(&in, "rust %d\n", i)
		}
		cmd := exec.CommandContext(ctx, cli, "append", "--journal", f.journalPath("rust"))
		cmd.Stdin = &in
		if out, err := cmd.CombinedOutput(); err != nil {
			errs <- fmt.Errorf("rust writer: %v\n%s", err, out)
		}
	}()
	if pyErr == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, python, "-c", pythonWriter, f.journalPath("python"), "python", fmt.Sprint(count))
			cmd.Env = append(os.Environ(),
				"PYTHONPATH="+filepath.Join(repoRoot(t), "bindings", "python", "src"),
				"TRIBUTARY_LIB="+lib)
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("python writer: %v\n%s", err, out)
				return
			}
			t.Log(strings.TrimSpace(string(out)))
		}()
	}
	// A Go drain loop competes with the Rust compactor for the lock.
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	goDrains := 0
loop:
	for {
		select {
		case <-writing:
			break loop
		default:
		}
		r, err := drainTakingTurns(ctx, f.target, DrainOptions{Spool: f.spool})
		if err != nil {
			t.Fatalf("Go drain: %v", err)
		}
		if r.Lines > 0 {
			goDrains++
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := drainTakingTurns(ctx, f.target, DrainOptions{Spool: f.spool}); err != nil {
		t.Fatal(err)
	}
	compactor.Process.Signal(syscall.SIGTERM)
	if err := compactor.Wait(); err != nil {
		t.Fatalf("tributary compact: %v\n%s", err, compactorOut.String())
	}
	t.Logf("Go drains that moved lines: %d; the Rust compactor: %s", goDrains,
		strings.TrimSpace(compactorOut.String()))

	checkExactlyOnce(t, "target", targetLines(t, f.target), writers, count)
	mustConsistent(t, f.target)
	// And read back through a Go Reader.
	r, err := OpenReader(f.target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for {
		l, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(l))
	}
	checkExactlyOnce(t, "reader", got, writers, count)
}
