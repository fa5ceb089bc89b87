package tributary

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkExactlyOnce checks that lines hold every "<writer>-<n>" line, n = 0..count-1,
// of each writer exactly once, and in order per writer.
func checkExactlyOnce(t testing.TB, who string, lines []string, writers []string, count int) {
	t.Helper()
	next := map[string]int{}
	for _, w := range writers {
		next[w] = 0
	}
	for _, l := range lines {
		var w string
		var n int
		if _, err := fmt.Sscanf(l, "%s %d", &w, &n); err != nil {
			t.Fatalf("%s: unexpected line %q", who, l)
		}
		want, ok := next[w]
		if !ok {
			t.Fatalf("%s: line %q from an unknown writer", who, l)
		}
		if n < want {
			t.Fatalf("%s: %q is a duplicate (writer %s is already at %d)", who, l, w, want)
		}
		if n > want {
			t.Fatalf("%s: %q arrived where %s %d was expected (a line lost or out of order)", who, l, w, want)
		}
		next[w]++
	}
	for _, w := range writers {
		if next[w] != count {
			t.Fatalf("%s: writer %s has %d lines, want %d", who, w, next[w], count)
		}
	}
}

// The shape of the seed's broker design, without a broker: N producer goroutines
// append to their own journals; two compactors drain the spool into the target,
// concurrently and repeatedly, while the producers run; M readers follow the target
// with Lines and each receives every line exactly once, in order per producer.
func TestFanInFanOut(t *testing.T) {
	const producers, perProducer, readers = 8, 150, 4
	f := newBareFixture(t) // Init comes after the first readers started
	total := producers * perProducer
	var names []string
	for p := range producers {
		names = append(names, fmt.Sprintf("producer%02d", p))
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	// Readers start first, before the target even exists; one more starts late.
	type result struct {
		who   string
		lines []string
		err   error
	}
	results := make(chan result, readers+1)
	var readersReady sync.WaitGroup
	startReader := func(who string) {
		r, err := OpenReader(f.target, 0)
		if err != nil {
			t.Errorf("%s: %v", who, err)
			results <- result{who: who, err: err}
			return
		}
		go func() {
			defer r.Close()
			rctx, rcancel := context.WithCancel(ctx)
			defer rcancel()
			var got []string
			for l := range r.Lines(rctx) {
				if l.Err != nil {
					results <- result{who: who, err: l.Err}
					return
				}
				got = append(got, string(l.Bytes))
				if len(got) == total {
					rcancel() // every line is here; anything more would be a duplicate
				}
			}
			// A duplicate would have to be committed before the last line arrived;
			// read whatever else is committed now, without waiting.
			for {
				l, ok, err := r.TryNext()
				if err != nil || !ok {
					results <- result{who: who, lines: got, err: err}
					return
				}
				got = append(got, string(l))
			}
		}()
	}
	for m := range readers {
		startReader(fmt.Sprintf("reader%d", m))
	}

	// Producers pause at the half and at three quarters until drains have moved
	// lines, so that draining overlaps producing however the goroutines are scheduled.
	var busyDrains atomic.Uint64
	awaitDrains := func(n uint64) {
		for busyDrains.Load() < n && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
	}
	var producing sync.WaitGroup
	for p := range producers {
		j := f.openJournal(t, names[p], nil)
		producing.Add(1)
		go func() {
			defer producing.Done()
			for i := 0; i < perProducer; {
				if i%25 == 0 && i+5 <= perProducer { // now and then a batch of 5
					batch := make([][]byte, 5)
					for k := range batch {
						batch[k] = []byte(fmt.Sprintf("%s %d", names[p], i+k))
					}
					if _, err := j.AppendBatch(batch); err != nil {
						t.Errorf("%s: %v", names[p], err)
						return
					}
					i += 5
				} else {
					if _, err := j.AppendString(fmt.Sprintf("%s %d", names[p], i)); err != nil {
						t.Errorf("%s: %v", names[p], err)
						return
					}
					i++
				}
				if i == perProducer/2 && p == 0 {
					readersReady.Add(1)
					go func() { defer readersReady.Done(); startReader("late reader") }()
				}
				switch i {
				case perProducer / 2:
					awaitDrains(1)
				case perProducer * 3 / 4:
					awaitDrains(2)
				}
			}
		}()
	}

	// The target is created once; two compactors drain concurrently and repeatedly
	// until the producers are done.
	f.init(t)
	producersDone := make(chan struct{})
	go func() { producing.Wait(); close(producersDone) }()
	var compacting sync.WaitGroup
	var drained atomic.Uint64
	for c := range 2 {
		compacting.Add(1)
		go func() {
			defer compacting.Done()
			for {
				select {
				case <-producersDone:
					return
				default:
				}
				r, err := drainTakingTurns(ctx, f.target, DrainOptions{Spool: f.spool, MaxRoundTime: 50 * time.Millisecond})
				if err != nil {
					t.Errorf("compactor %d: %v", c, err)
					return
				}
				drained.Add(r.Lines)
				if r.Lines > 0 {
					busyDrains.Add(1)
				}
				time.Sleep(time.Duration(c+1) * 3 * time.Millisecond)
			}
		}()
	}
	compacting.Wait()
	// The last lines: one more drain after every producer returned.
	r, err := Drain(ctx, f.target, DrainOptions{Spool: f.spool})
	if err != nil {
		t.Fatal(err)
	}
	drained.Add(r.Lines)
	if drained.Load() != uint64(total) {
		t.Fatalf("the drains moved %d lines, want %d", drained.Load(), total)
	}
	readersReady.Wait()
	t.Logf("%d lines from %d producers in %d drains that moved lines while they produced",
		total, producers, busyDrains.Load())
	if busyDrains.Load() < 2 {
		t.Fatalf("only %d drains moved lines while the producers ran: the drains did not overlap them",
			busyDrains.Load())
	}

	checkExactlyOnce(t, "target", targetLines(t, f.target), names, perProducer)
	mustConsistent(t, f.target)
	for range readers + 1 {
		select {
		case res := <-results:
			if res.err != nil {
				t.Fatalf("%s: %v", res.who, res.err)
			}
			checkExactlyOnce(t, res.who, res.lines, names, perProducer)
		case <-ctx.Done():
			t.Fatal("timed out waiting for the readers")
		}
	}
}
