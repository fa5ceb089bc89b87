package tributary_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	tributary "github.com/tributary-dev/tributary/bindings/go"
)

// The target is created once; a writer appends to its journal, a compactor drains
// the spool into the shared target, and a reader reads the committed lines.
func Example() {
	dir, _ := os.MkdirTemp("", "tributary-example-")
	defer os.RemoveAll(dir)
	spool := filepath.Join(dir, "spool")
	os.Mkdir(spool, 0o755)
	target := filepath.Join(dir, "events.log") // on the shared filesystem in production

	// Once, at setup (or `tributary init --target ...`): drains never create a target.
	if _, err := tributary.Init(context.Background(), target); err != nil {
		log.Fatal(err)
	}

	j, err := tributary.OpenJournal(filepath.Join(spool, "web1.journal"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer j.Close()
	seq, _ := j.Append([]byte("GET /index.html 200")) // durable when it returns
	first, _ := j.AppendBatch([][]byte{[]byte("GET /a.css 200"), []byte("GET /b.js 404")})
	fmt.Println("seqs:", seq, first, first+1)

	report, err := tributary.Drain(context.Background(), target, tributary.DrainOptions{Spool: spool})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("drained:", report.Lines, "lines")

	r, err := tributary.OpenReader(target, 0)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for {
		line, ok, err := r.TryNext()
		if err != nil {
			log.Fatal(err)
		}
		if !ok {
			break
		}
		fmt.Printf("%s (next offset %d)\n", line, r.Offset())
	}
	// Output:
	// seqs: 1 2 3
	// drained: 3 lines
	// GET /index.html 200 (next offset 20)
	// GET /a.css 200 (next offset 35)
	// GET /b.js 404 (next offset 49)
}

// Lines follows a target as drains commit more lines, until its context is done.
func ExampleReader_Lines() {
	dir, _ := os.MkdirTemp("", "tributary-example-")
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "events.log")
	journal := filepath.Join(dir, "app.journal")

	j, _ := tributary.OpenJournal(journal, nil) // before a drain names it
	defer j.Close()
	if _, err := tributary.Init(context.Background(), target); err != nil {
		log.Fatal(err)
	}

	// A compactor keeps draining in the background.
	ctx, stop := context.WithCancel(context.Background())
	compactor := make(chan error)
	go func() {
		compactor <- tributary.Compact(ctx, target, tributary.CompactOptions{
			DrainOptions: tributary.DrainOptions{Journals: []string{journal}},
			Interval:     10 * time.Millisecond,
		})
	}()
	defer func() {
		stop()
		if err := <-compactor; err != nil {
			log.Fatal(err)
		}
	}()

	r, _ := tributary.OpenReader(target, 0)
	defer r.Close()

	follow, done := context.WithCancel(context.Background())
	defer done()
	go func() {
		for _, s := range []string{"one", "two", "three"} {
			j.AppendString(s)
		}
	}()
	n := 0
	for line := range r.Lines(follow) {
		if line.Err != nil {
			log.Fatal(line.Err)
		}
		fmt.Println(string(line.Bytes))
		if n++; n == 3 {
			done() // stop following; line.Cursor is where to resume
		}
	}
	// Output:
	// one
	// two
	// three
}

// With managed rotation, a reader's position is a Cursor (generation, offset): keep
// the Cursor of the last line processed and resume from it with OpenReaderAt, across
// rotations.
func ExampleOpenReaderAt() {
	dir, _ := os.MkdirTemp("", "tributary-example-")
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "events.log")
	if _, err := tributary.Init(context.Background(), target); err != nil {
		log.Fatal(err)
	}
	j, _ := tributary.OpenJournal(filepath.Join(dir, "app.journal"), nil)
	defer j.Close()
	// Every drain first rotates a generation that holds 2 lines or more.
	opts := tributary.DrainOptions{Journals: []string{j.Path()}, RotateLines: 2}
	drain := func(lines ...string) {
		for _, l := range lines {
			j.AppendString(l)
		}
		if _, err := tributary.Drain(context.Background(), target, opts); err != nil {
			log.Fatal(err)
		}
	}

	drain("a", "b")
	r, err := tributary.OpenReaderAt(target, tributary.CursorStart)
	if err != nil {
		log.Fatal(err)
	}
	line, _, _ := r.TryNext()
	saved := r.Cursor() // persist it with the work done for the line (saved.String(): "<target id>:1:2")
	fmt.Printf("processed %s, cursor %d:%d\n", line, saved.Generation, saved.Offset)
	r.Close()

	drain("c", "d") // generation 1 becomes events.log.1
	drain("e")      // generation 2 becomes events.log.2

	r, err = tributary.OpenReaderAt(target, saved)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for {
		line, ok, err := r.TryNext()
		if err != nil {
			log.Fatal(err)
		}
		if !ok {
			break
		}
		c := r.Cursor()
		fmt.Printf("processed %s, cursor %d:%d\n", line, c.Generation, c.Offset)
	}
	v, _ := tributary.Verify(target)
	fmt.Println("generation", v.Generation, "with", v.RotatedGenerations, "rotated, consistent:", v.Consistent)
	// Output:
	// processed a, cursor 1:2
	// processed b, cursor 2:0
	// processed c, cursor 2:2
	// processed d, cursor 3:0
	// processed e, cursor 3:2
	// generation 3 with 2 rotated, consistent: true
}

// A target is created once, with Init (or `tributary init --target T`). Drains never
// create one, so that a share that is not mounted is an error, not a new empty file
// on the local disk; Init on an existing target changes nothing.
func ExampleInit() {
	dir, _ := os.MkdirTemp("", "tributary-example-")
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "events.log")
	j, _ := tributary.OpenJournal(filepath.Join(dir, "app.journal"), nil)
	defer j.Close()
	j.AppendString("hello")
	opts := tributary.DrainOptions{Journals: []string{j.Path()}}

	_, err := tributary.Drain(context.Background(), target, opts)
	fmt.Println("before Init:", errors.Is(err, tributary.ErrTargetMissing))

	first, err := tributary.Init(context.Background(), target)
	if err != nil {
		log.Fatal(err)
	}
	again, _ := tributary.Init(context.Background(), target)
	fmt.Println("created:", first.Created, "then", again.Created, "- same target:", again.TargetID == first.TargetID)

	report, err := tributary.Drain(context.Background(), target, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("drained:", report.Lines, "line")
	// Output:
	// before Init: true
	// created: true then false - same target: true
	// drained: 1 line
}

// Errors carry a kind: test it with errors.Is, get the details with errors.As.
func ExampleError() {
	dir, _ := os.MkdirTemp("", "tributary-example-")
	defer os.RemoveAll(dir)
	j, _ := tributary.OpenJournal(filepath.Join(dir, "a.journal"), &tributary.JournalOptions{MaxBacklogBytes: 8})
	defer j.Close()

	_, err := j.AppendBatch([][]byte{[]byte("fine"), []byte("two\nlines")})
	var e *tributary.Error
	if errors.Is(err, tributary.ErrInvalidLine) && errors.As(err, &e) {
		fmt.Println("refused:", e.Kind, "line index", e.LineIndex)
	}
	j.AppendString("12345678")
	if _, err := j.AppendString("more"); errors.Is(err, tributary.ErrJournalFull) {
		fmt.Println("journal full: drain it, then retry")
	}
	// Output:
	// refused: invalid_line line index 1
	// journal full: drain it, then retry
}

// Structured logs, one JSON line per record, exactly once in the shared file.
func ExampleNewSlogHandler() {
	dir, _ := os.MkdirTemp("", "tributary-example-")
	defer os.RemoveAll(dir)
	j, _ := tributary.OpenJournal(filepath.Join(dir, "app.journal"), nil)
	defer j.Close()

	logger := slog.New(tributary.NewSlogHandler(j, &slog.HandlerOptions{
		// Drop the time so that the output below is stable.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
	logger.Info("request", "path", "/index.html", "status", 200)
	logger.Warn("multi\nline message")

	target := filepath.Join(dir, "app.log")
	// Create: a one-shot drain that may create the target (a daemon should not: see Init).
	tributary.Drain(context.Background(), target, tributary.DrainOptions{Journals: []string{j.Path()}, Create: true})
	b, _ := os.ReadFile(target)
	fmt.Print(string(b))
	// Output:
	// {"level":"INFO","msg":"request","path":"/index.html","status":200}
	// {"level":"WARN","msg":"multi\nline message"}
}

// NewWriter turns a Journal into an io.Writer: one journal line per written line.
func ExampleNewWriter() {
	dir, _ := os.MkdirTemp("", "tributary-example-")
	defer os.RemoveAll(dir)
	j, _ := tributary.OpenJournal(filepath.Join(dir, "app.journal"), nil)
	defer j.Close()

	w := tributary.NewWriter(j)
	fmt.Fprintf(w, "first line\nsecond ")
	fmt.Fprintf(w, "line\nno newline yet")
	w.Close() // appends the partial line

	b, _ := j.Backlog()
	fmt.Println(b.Lines, "lines")
	// Output:
	// 3 lines
}
