// Command pipeline is a fan-in → process → fan-out pipeline on tributary, with no
// broker: the shape of a system that is usually glued together with AMQP.
//
//	producers ──▶ their journals ──▶ compactor A ──▶ a.log
//	a.log ──▶ processor (transforms each line) ──▶ its journal ──▶ compactor B ──▶ b.log
//	b.log ──▶ consumers (each receives every result exactly once)
//
// Every hop is exactly-once: journals keep what was appended until a compactor has
// committed it to the target, readers see committed lines only, and the processor
// appends each result together with its cursor in a.log, in one journal transaction
// (AppendBatchWithCursor): a processor restarted after a crash resumes from the
// cursor its journal holds (Journal.Cursor), which always matches the results stored,
// so nothing is processed twice or skipped. Compactor A rotates a.log every 8 KiB
// (a.log.1, a.log.2, ...); the processor's cursor follows it across rotations.
//
// Run it from bindings/go after `cargo build --release`:
//
//	go run ./examples/pipeline
//	go run ./examples/pipeline -producers 8 -events 1000 -consumers 5 -dir /tmp/pipe -keep
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tributary-dev/tributary/bindings/go"
)

func main() {
	producers := flag.Int("producers", 4, "producer goroutines, one journal each")
	events := flag.Int("events", 250, "events per producer")
	consumers := flag.Int("consumers", 3, "consumer goroutines reading the results")
	dir := flag.String("dir", "", "working folder (default: a new temporary folder)")
	keep := flag.Bool("keep", false, "keep the working folder")
	flag.Parse()
	if err := run(*producers, *events, *consumers, *dir, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline: FAILED:", err)
		os.Exit(1)
	}
}

// stats counts what a compactor did.
type stats struct {
	lines, drains, rotations atomic.Uint64
}

func (s *stats) onDrain(r tributary.DrainReport) {
	s.lines.Add(r.Lines)
	s.drains.Add(1)
	s.rotations.Add(r.Rotations)
}

func run(producers, events, consumers int, dir string, keep bool) error {
	if producers < 1 || events < 1 || consumers < 1 {
		return errors.New("-producers, -events and -consumers must be at least 1")
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "tributary-pipeline-")
		if err != nil {
			return err
		}
		dir = d
		if !keep {
			defer os.RemoveAll(dir)
		}
	}
	spoolA, spoolB := filepath.Join(dir, "spool-a"), filepath.Join(dir, "spool-b")
	targetA, targetB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	for _, d := range []string{spoolA, spoolB} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, t := range []string{targetA, targetB} { // once, at setup: drains never create a target
		if _, err := tributary.Init(context.Background(), t); err != nil {
			return err
		}
	}
	total := producers * events
	start := time.Now()
	fmt.Printf("tributary %s pipeline in %s\n", tributary.LibraryVersion(), dir)

	// A failure anywhere cancels ctx, which stops every stage.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	errs := make(chan error, producers+consumers+3)
	fail := func(stage string, err error) {
		errs <- fmt.Errorf("%s: %w", stage, err)
		cancel()
	}
	// workers: producers, the processor and the consumers, which stop on their own
	// once they have produced or received everything; the compactors run until then.
	var workers, compactors sync.WaitGroup

	// Compactors: one per target, draining their spool until the end.
	compactCtx, stopCompactors := context.WithCancel(ctx)
	defer stopCompactors()
	var statsA, statsB stats
	for _, c := range []struct {
		name, target, spool string
		rotateBytes         uint64
		stats               *stats
	}{{"compactor A", targetA, spoolA, 8 << 10, &statsA}, {"compactor B", targetB, spoolB, 0, &statsB}} {
		compactors.Add(1)
		go func() {
			defer compactors.Done()
			err := tributary.Compact(compactCtx, c.target, tributary.CompactOptions{
				DrainOptions: tributary.DrainOptions{Spool: c.spool, RotateBytes: c.rotateBytes},
				Interval:     20 * time.Millisecond,
				OnDrain:      c.stats.onDrain,
			})
			if err != nil {
				fail(c.name, err)
			}
		}()
	}

	// Producers: each appends its events to its own journal (fan-in).
	for p := range producers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			j, err := tributary.OpenJournal(filepath.Join(spoolA, fmt.Sprintf("producer%d.journal", p)), nil)
			if err != nil {
				fail("producer", err)
				return
			}
			defer j.Close()
			for n := range events {
				event := fmt.Sprintf("event p%d-%d amount=%d", p, n, (p+1)*(n+1))
				if _, err := j.AppendString(event); err != nil {
					fail("producer", err)
					return
				}
			}
		}()
	}

	// The processor: follows a.log, transforms each event into a result, and
	// appends it to its own journal together with its cursor in a.log (one transaction).
	var processed atomic.Int64
	workers.Add(1)
	go func() {
		defer workers.Done()
		j, err := tributary.OpenJournal(filepath.Join(spoolB, "processor.journal"), nil)
		if err != nil {
			fail("processor", err)
			return
		}
		defer j.Close()
		// Where the results already in the journal left off (a restarted processor);
		// CursorStart, the oldest generation of a.log, the first time.
		start, found, err := j.Cursor("a.log")
		if err != nil {
			fail("processor", err)
			return
		}
		if !found {
			start = tributary.CursorStart
		}
		r, err := tributary.OpenReaderAt(targetA, start)
		if err != nil {
			fail("processor", err)
			return
		}
		defer r.Close()
		pctx, done := context.WithCancel(ctx)
		defer done()
		for line := range r.Lines(pctx) {
			if line.Err != nil {
				fail("processor", line.Err)
				return
			}
			result, err := process(string(line.Bytes))
			if err != nil {
				fail("processor", err)
				return
			}
			// The result and the cursor after its input line, in one transaction.
			if _, err := j.AppendBatchWithCursor([][]byte{[]byte(result)}, "a.log", line.Cursor); err != nil {
				fail("processor", err)
				return
			}
			if processed.Add(1) == int64(total) {
				done()
			}
		}
	}()

	// Consumers: each follows b.log on its own and must receive every result once
	// (fan-out).
	counts := make([]string, consumers)
	for c := range consumers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			r, err := tributary.OpenReader(targetB, 0)
			if err != nil {
				fail("consumer", err)
				return
			}
			defer r.Close()
			cctx, done := context.WithCancel(ctx)
			defer done()
			seen := make(map[string]int, total)
			received := 0
			for line := range r.Lines(cctx) {
				if line.Err != nil {
					fail("consumer", line.Err)
					return
				}
				id, _, _ := strings.Cut(strings.TrimPrefix(string(line.Bytes), "result "), " ")
				seen[id]++
				if received++; received == total {
					done()
				}
			}
			// Anything committed beyond the expected results would be a duplicate.
			for {
				extra, ok, err := r.TryNext()
				if err != nil || !ok {
					break
				}
				id, _, _ := strings.Cut(strings.TrimPrefix(string(extra), "result "), " ")
				seen[id]++
				received++
			}
			dups := 0
			for _, n := range seen {
				dups += n - 1
			}
			counts[c] = fmt.Sprintf("  consumer %d: %d results received, %d distinct, %d missing, %d duplicated",
				c+1, received, len(seen), total-len(seen), dups)
			if received != total || len(seen) != total || dups != 0 {
				fail("consumer", fmt.Errorf("consumer %d did not get every result exactly once", c+1))
			}
		}()
	}

	workers.Wait()
	stopCompactors()
	compactors.Wait()
	close(errs)
	var failures []error
	for err := range errs {
		failures = append(failures, err)
	}
	if len(failures) > 0 {
		return errors.Join(failures...)
	}

	fmt.Printf("  producers:   %d goroutines × %d events → %d journals in spool-a/\n", producers, events, producers)
	fmt.Printf("  compactor A: %d lines → a.log in %d drains, %d rotations (every 8 KiB)\n",
		statsA.lines.Load(), statsA.drains.Load(), statsA.rotations.Load())
	fmt.Printf("  processor:   %d events read from a.log → %d results appended to spool-b/processor.journal "+
		"(each with its cursor in a.log, in one transaction)\n", processed.Load(), processed.Load())
	fmt.Printf("  compactor B: %d lines → b.log in %d drains\n", statsB.lines.Load(), statsB.drains.Load())
	for _, c := range counts {
		fmt.Println(c)
	}
	for _, t := range []string{targetA, targetB} {
		v, err := tributary.Verify(t)
		if err != nil {
			return err
		}
		if !v.Consistent {
			return fmt.Errorf("verify %s: %s", t, strings.Join(v.Problems, "; "))
		}
		fmt.Printf("  verify %s: consistent, %d rotated generation(s) + current generation %d "+
			"(%d lines, %d bytes), epoch %d\n",
			filepath.Base(t), v.RotatedGenerations, v.Generation, v.CommittedLines, v.CommittedLen, v.Epoch)
	}
	fmt.Printf("ok: %d events in, %d results out to each of %d consumers, exactly once (%.2f s)\n",
		total, total, consumers, time.Since(start).Seconds())
	return nil
}

// process turns "event p1-17 amount=34" into "result p1-17 amount=34 fee=0.34 net=33.66".
func process(event string) (string, error) {
	fields := strings.Fields(event)
	if len(fields) != 3 || fields[0] != "event" || !strings.HasPrefix(fields[2], "amount=") {
		return "", fmt.Errorf("malformed event %q", event)
	}
	amount, err := strconv.Atoi(strings.TrimPrefix(fields[2], "amount="))
	if err != nil {
		return "", fmt.Errorf("malformed event %q: %w", event, err)
	}
	cents := amount * 100
	fee := cents / 100
	return fmt.Sprintf("result %s amount=%d fee=%d.%02d net=%d.%02d",
		fields[1], amount, fee/100, fee%100, (cents-fee)/100, (cents-fee)%100), nil
}
