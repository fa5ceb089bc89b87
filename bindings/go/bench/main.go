// Command bench compares Go logging through log/slog, side by side in one run:
// tributary's SlogHandler over an Appender (background commit) and over a Journal
// (durable on return) against the non-durable writers it replaces — a mutex-guarded
// os.File behind a bufio.Writer, lumberjack, and a plain os.File (one write per
// record). G goroutines (1 and 16) log 100-byte records for a fixed time; rows
// alternate within each repetition and every figure is the median of the
// repetitions (read the ratios on a loaded machine). The Appender row counts only
// records durable at the end (its window ends with Flush) and reports the durability
// window as the Appender measured it (DurableWait).
//
// Usage (from bindings/go/bench, after `cargo build --release`):
//
//	go run . [-seconds 2] [-reps 3] [-goroutines 1,16]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tributary "github.com/tributary-dev/tributary/bindings/go"
	"gopkg.in/natefinch/lumberjack.v2"
)

var msg = strings.Repeat("x", 60) // with slog's JSON envelope: ~100 bytes

// lockedBuffered is the usual hand-rolled logger sink: a mutex, a bufio.Writer, a file.
type lockedBuffered struct {
	mu sync.Mutex
	w  *bufio.Writer
	f  *os.File
}

func (l *lockedBuffered) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type row struct {
	name    string
	durable bool
	// open returns the handler, a function run at the end of the timed window, and
	// the Appender when there is one (for its measured durability window).
	open func(dir string) (slog.Handler, func() error, *tributary.Appender, error)
}

var rows = []row{
	{"tributary Appender (background)", true, func(dir string) (slog.Handler, func() error, *tributary.Appender, error) {
		a, err := tributary.OpenAppender(filepath.Join(dir, "a.journal"), nil)
		if err != nil {
			return nil, nil, nil, err
		}
		return tributary.NewSlogHandler(a, nil), a.Close, a, nil
	}},
	{"tributary Journal (durable on return)", true, func(dir string) (slog.Handler, func() error, *tributary.Appender, error) {
		j, err := tributary.OpenJournal(filepath.Join(dir, "j.journal"), nil)
		if err != nil {
			return nil, nil, nil, err
		}
		return tributary.NewSlogHandler(j, nil), j.Close, nil, nil
	}},
	{"os.File + bufio + mutex", false, func(dir string) (slog.Handler, func() error, *tributary.Appender, error) {
		f, err := os.Create(filepath.Join(dir, "buffered.log"))
		if err != nil {
			return nil, nil, nil, err
		}
		l := &lockedBuffered{w: bufio.NewWriterSize(f, 64<<10), f: f}
		done := func() error {
			l.mu.Lock()
			defer l.mu.Unlock()
			if err := l.w.Flush(); err != nil {
				return err
			}
			return f.Close()
		}
		return slog.NewJSONHandler(l, nil), done, nil, nil
	}},
	{"lumberjack", false, func(dir string) (slog.Handler, func() error, *tributary.Appender, error) {
		l := &lumberjack.Logger{Filename: filepath.Join(dir, "lumberjack.log"), MaxSize: 1 << 10}
		return slog.NewJSONHandler(l, nil), l.Close, nil, nil
	}},
	{"os.File (a write per record)", false, func(dir string) (slog.Handler, func() error, *tributary.Appender, error) {
		f, err := os.Create(filepath.Join(dir, "plain.log"))
		if err != nil {
			return nil, nil, nil, err
		}
		return slog.NewJSONHandler(io.Writer(f), nil), f.Close, nil, nil
	}},
}

type result struct {
	rate              float64
	p99emit, p99durab time.Duration
}

func run(r row, goroutines int, d time.Duration) (result, error) {
	dir, err := os.MkdirTemp(os.Getenv("TRIB_BENCH_DIR"), "trib-gobench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	h, done, app, err := r.open(dir)
	if err != nil {
		return result{}, err
	}
	logger := slog.New(h)
	var total atomic.Int64
	lat := make([][]time.Duration, goroutines)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for ; n%64 != 0 || time.Now().Before(deadline); n++ {
				t0 := time.Now()
				logger.Info(msg, "k", n)
				t1 := time.Now()
				lat[g] = append(lat[g], t1.Sub(t0))
			}
			total.Add(int64(n))
		}()
	}
	wg.Wait()
	if app != nil {
		if err := app.Flush(); err != nil { // the background row counts only durable records
			return result{}, err
		}
	}
	elapsed := time.Since(start)
	var window time.Duration
	if app != nil { // the appender's own measure: never below the true wait
		if window, err = app.DurableWait(0.99); err != nil {
			return result{}, err
		}
	}
	if err := done(); err != nil {
		return result{}, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	res := result{rate: float64(total.Load()) / elapsed.Seconds(), p99emit: pct(all, 0.99)}
	if app != nil {
		res.p99durab = window
	} else if r.durable {
		res.p99durab = res.p99emit
	}
	return res, nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

func main() {
	seconds := flag.Float64("seconds", 2, "seconds per row")
	reps := flag.Int("reps", 3, "repetitions (rows alternate)")
	gs := flag.String("goroutines", "1,16", "goroutine counts")
	groupCommit := flag.Int("group-commit", 0, "instead: N goroutines of single durable appends on one journal; print lines/s")
	only := flag.String("rows", "", "only the rows whose name contains one of these comma-separated words (for profiling)")
	flag.Parse()
	if *only != "" {
		var kept []row
		for _, r := range rows {
			for _, w := range strings.Split(*only, ",") {
				if strings.Contains(r.name, w) {
					kept = append(kept, r)
					break
				}
			}
		}
		rows = kept
	}
	if *groupCommit > 0 {
		if err := groupCommitRun(*groupCommit, time.Duration(*seconds*float64(time.Second))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var counts []int
	for _, s := range strings.Split(*gs, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "bad -goroutines:", s)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	got := map[string][]result{}
	key := func(name string, g int) string { return fmt.Sprint(name, "/", g) }
	for rep := range *reps {
		order := rows
		if rep%2 == 1 {
			order = make([]row, len(rows))
			for i, r := range rows {
				order[len(rows)-1-i] = r
			}
		}
		for _, g := range counts {
			for _, r := range order {
				res, err := run(r, g, time.Duration(*seconds*float64(time.Second)))
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v\n", r.name, err)
					os.Exit(1)
				}
				got[key(r.name, g)] = append(got[key(r.name, g)], res)
				fmt.Printf("rep %d  %2d goroutines  %-38s %12.0f rec/s  p99 %v\n", rep+1, g, r.name, res.rate, res.p99emit)
			}
		}
	}
	med := func(name string, g int, f func(result) float64) float64 {
		var v []float64
		for _, r := range got[key(name, g)] {
			v = append(v, f(r))
		}
		if len(v) == 0 {
			return 0
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	rate := func(r result) float64 { return r.rate }
	fmt.Printf("\n# Go logging through slog, side by side (%d reps x %gs, medians)\n\n", *reps, *seconds)
	fmt.Print("| writer | durable |")
	for _, g := range counts {
		fmt.Printf(" %d goroutines |", g)
	}
	fmt.Print("\n|---|---|" + strings.Repeat("---|", len(counts)) + "\n")
	for _, r := range rows {
		fmt.Printf("| %s | %v |", r.name, r.durable)
		for _, g := range counts {
			cell := fmt.Sprintf(" %.0f/s, p99 emit %.3f ms", med(r.name, g, rate), med(r.name, g, func(x result) float64 { return float64(x.p99emit) / 1e6 }))
			if r.durable {
				cell += fmt.Sprintf(", to durable p99 %.1f ms", med(r.name, g, func(x result) float64 { return float64(x.p99durab) / 1e6 }))
			}
			fmt.Print(cell + " |")
		}
		fmt.Println()
	}
	fmt.Println("\n## Targets (issue 18)")
	for _, g := range counts {
		if g < 16 {
			continue
		}
		appender, buffered := med("tributary Appender (background)", g, rate), med("os.File + bufio + mutex", g, rate)
		if appender == 0 || buffered == 0 {
			continue // a -rows run without both rows
		}
		ratio := appender / buffered
		verdict := "FAIL"
		if ratio >= 1.0 {
			verdict = "PASS"
		}
		fmt.Printf("- %s: slog over an Appender >= 1.0x a mutex-guarded os.File + bufio, %d goroutines — %.2fx\n", verdict, g, ratio)
	}
}

// groupCommitRun is the group-commit anchor's tributary side: n goroutines each
// appending single 100-byte lines, durable on return (full), to one journal for d;
// it prints the lines per second (scripts/bench-logging puts PostgreSQL beside it).
func groupCommitRun(n int, d time.Duration) error {
	dir, err := os.MkdirTemp(os.Getenv("TRIB_BENCH_DIR"), "trib-groupcommit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	j, err := tributary.OpenJournal(filepath.Join(dir, "g.journal"), nil)
	if err != nil {
		return err
	}
	defer j.Close()
	line := []byte(strings.Repeat("x", 100))
	var total atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := j.Append(line); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	fmt.Printf("%.0f\n", float64(total.Load())/time.Since(start).Seconds())
	return nil
}
