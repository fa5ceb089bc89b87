package tributary

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Explicit creation (docs/design.md, rule 5): Init creates a target once; Drain,
// Compact and Retire never create one unless DrainOptions.Create is set, so a target
// that was never initialised, or whose share is not mounted, is ErrTargetMissing and
// nothing is created or lost.

// wantMissing checks that err is ErrTargetMissing, in every way a caller may test it.
func wantMissing(t *testing.T, err error, what string) *Error {
	t.Helper()
	if !errors.Is(err, ErrTargetMissing) {
		t.Fatalf("%s: want ErrTargetMissing, got %v", what, err)
	}
	e := wantKind(t, err, KindTargetMissing)
	if e.Kind.String() != "target_missing" || int(e.Kind) != 18 {
		t.Fatalf("%s: kind %q (%d)", what, e.Kind, int(e.Kind))
	}
	if !strings.Contains(e.Message, "Nothing was created") {
		t.Fatalf("%s: Message = %q", what, e.Message)
	}
	return e
}

func TestDrainIntoUninitialisedTargetCreatesNothing(t *testing.T) {
	f := newBareFixture(t)
	shared := filepath.Join(f.dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(shared, "app.log")
	j := f.openJournal(t, "a", nil)
	if _, err := j.AppendBatch([][]byte{[]byte("one"), []byte("two")}); err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	for what, refused := range map[string]func() error{
		"Drain of journals": func() error {
			_, err := Drain(bg, target, DrainOptions{Journals: []string{j.Path()}})
			return err
		},
		"Drain of a spool": func() error { _, err := Drain(bg, target, DrainOptions{Spool: f.spool}); return err },
		"Drain of nothing": func() error { _, err := Drain(bg, target, DrainOptions{}); return err },
		"Retire":           func() error { _, err := Retire(bg, target, DrainOptions{Journals: []string{j.Path()}}); return err },
		// The daemon retries a missing target (the share may be mounted later), as the
		// CLI's does: it reports the problem once instead of returning it.
		"Compact reports it": func() error {
			ctx, cancel := context.WithTimeout(bg, hangGuard) // it must report long before
			defer cancel()
			var problem *Error
			err := Compact(ctx, target, CompactOptions{
				DrainOptions: DrainOptions{Spool: f.spool},
				Interval:     time.Millisecond,
				OnEvent: func(e CompactEvent) {
					if e.Type == EventProblem && problem == nil {
						problem = &Error{Op: "compact", Kind: e.Kind, Message: e.Message, LineIndex: -1}
						cancel()
					}
				},
			})
			if err != nil {
				return fmt.Errorf("Compact returned %v instead of retrying", err)
			}
			if problem == nil {
				return fmt.Errorf("Compact ran until its context ended without reporting a problem")
			}
			return problem
		},
	} {
		e := wantMissing(t, refused(), what)
		if !strings.Contains(e.Message, "tributary init") {
			t.Fatalf("%s: the message does not say how to create the target: %q", what, e.Message)
		}
		// No target file, no <target>.tributary folder: nothing at all.
		if got := entries(t, shared); len(got) != 0 {
			t.Fatalf("%s created %q", what, got)
		}
		if b, _ := j.Backlog(); b.Lines != 2 || b.LastSeq != 2 || b.DrainedSeq != 0 {
			t.Fatalf("%s: the journal's lines moved: %+v", what, b)
		}
	}
	if _, err := os.Stat(j.Path()); err != nil {
		t.Fatalf("Retire removed the journal: %v", err)
	}

	// Init, then a drain delivers the lines, exactly once.
	created, err := Init(bg, target)
	if err != nil || !created.Created || created.AdoptedLines != 0 {
		t.Fatalf("Init = %+v, %v", created, err)
	}
	if r, err := Drain(bg, target, DrainOptions{Journals: []string{j.Path()}}); err != nil || r.Lines != 2 {
		t.Fatalf("Drain after Init = %+v, %v", r, err)
	}
	if r, err := Drain(bg, target, DrainOptions{Spool: f.spool}); err != nil || r.Lines != 0 {
		t.Fatalf("a second Drain = %+v, %v", r, err)
	}
	if b, _ := j.Backlog(); b.Lines != 0 || b.DrainedSeq != 2 {
		t.Fatalf("Backlog after the drains = %+v", b)
	}
	if got := strings.Join(targetLines(t, target), ","); got != "one,two" {
		t.Fatalf("target = %q", got)
	}
	if v := mustConsistent(t, target); v.CommittedLines != 2 {
		t.Fatalf("Verify = %+v", v)
	}
}

func TestInitIsIdempotentAndAdoptsExistingLines(t *testing.T) {
	f := newBareFixture(t)
	before := "written before tributary\nby a plain >>\n"
	if err := os.WriteFile(f.target, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	first := f.init(t)
	if !first.Created || first.AdoptedLines != 2 || first.Upgraded || first.Rebound || len(first.TargetID) != 32 {
		t.Fatalf("first Init = %+v", first)
	}
	if b, _ := os.ReadFile(f.target); string(b) != before {
		t.Fatalf("Init changed the adopted file: %q", b)
	}
	st, err := Status(f.target, "")
	if err != nil || st.CommittedLines != 2 || st.CommittedLen != uint64(len(before)) || st.TargetID != first.TargetID {
		t.Fatalf("Status after Init = %+v, %v", st, err)
	}
	if st.ManifestFormat != 3 {
		t.Fatalf("a new target's manifest format = %d, want 3 (deltas)", st.ManifestFormat)
	}
	if none, err := Status(filepath.Join(t.TempDir(), "never.log"), ""); err != nil || none.ManifestFormat != 0 {
		t.Fatalf("no manifest: ManifestFormat = %d, %v; want 0", none.ManifestFormat, err)
	}
	second := f.init(t)
	if second.Created || second.AdoptedLines != 0 || second.Upgraded || second.Rebound || second.TargetID != first.TargetID {
		t.Fatalf("second Init = %+v, want the same target, untouched (first %+v)", second, first)
	}

	j := f.openJournal(t, "a", nil)
	j.AppendString("from a journal")
	if r := f.drain(t); r.Lines != 1 {
		t.Fatalf("Drain = %+v", r)
	}
	// The same target by another spelling of its path.
	third, err := Init(context.Background(), filepath.Join(f.dir, ".", "out.log"))
	if err != nil || third.Created || third.TargetID != first.TargetID {
		t.Fatalf("third Init = %+v, %v", third, err)
	}
	if got := strings.Join(targetLines(t, f.target), ","); got != "written before tributary,by a plain >>,from a journal" {
		t.Fatalf("target = %q", got)
	}
	if v := mustConsistent(t, f.target); v.CommittedLines != 3 {
		t.Fatalf("Verify = %+v", v)
	}
}

// The share is not mounted: the target's folder is there (the mount point) but
// empty, without the target or its sidecar. A drain must refuse, not start a new
// empty target on the local disk that the real one would never see.
func TestDrainIntoEmptyMountPointRefuses(t *testing.T) {
	f := newBareFixture(t)
	mnt := filepath.Join(f.dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(mnt, "app.log")
	created, err := Init(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	j := f.openJournal(t, "host1", nil)
	j.AppendString("before the unmount")
	opts := DrainOptions{Spool: f.spool}
	if r, err := Drain(context.Background(), target, opts); err != nil || r.Lines != 1 {
		t.Fatalf("Drain = %+v, %v", r, err)
	}

	unmounted := filepath.Join(f.dir, "the-share-while-unmounted")
	if err := os.Rename(mnt, unmounted); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil { // the empty mount point
		t.Fatal(err)
	}
	j.AppendString("while unmounted")
	_, err = Drain(context.Background(), target, opts)
	if e := wantMissing(t, err, "Drain"); !strings.Contains(e.Message, "not mounted") {
		t.Fatalf("the message does not mention the mount: %q", e.Message)
	}
	_, err = Retire(context.Background(), target, DrainOptions{Journals: []string{j.Path()}})
	wantMissing(t, err, "Retire")
	if got := entries(t, mnt); len(got) != 0 {
		t.Fatalf("the refused drains created %q in the mount point", got)
	}
	if b, _ := j.Backlog(); b.Lines != 1 {
		t.Fatalf("the journal's line moved: %+v", b)
	}

	if err := os.Remove(mnt); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(unmounted, mnt); err != nil { // mounted again
		t.Fatal(err)
	}
	if r, err := Drain(context.Background(), target, opts); err != nil || r.Lines != 1 {
		t.Fatalf("Drain after the remount = %+v, %v", r, err)
	}
	if st, err := Status(target, ""); err != nil || st.TargetID != created.TargetID {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if got := strings.Join(targetLines(t, target), ","); got != "before the unmount,while unmounted" {
		t.Fatalf("target = %q", got)
	}
}

// A drain that finds another file (another inode) at the target's path refuses it:
// the share may be unmounted with a local file in its place. Init accepts a file
// restored or copied on purpose if its committed part is the committed one.
func TestReplacedTargetFileIsRefusedUntilInitAcceptsIt(t *testing.T) {
	f := newFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("one")
	j.AppendString("two")
	f.drain(t)
	replace := func(content string) {
		t.Helper()
		tmp := filepath.Join(f.dir, "replacement")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.target); err != nil {
			t.Fatal(err)
		}
	}
	replace("one\ntwo\n") // the same bytes, another file
	j.AppendString("three")
	_, err := Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	if e := wantMissing(t, err, "Drain"); !strings.Contains(e.Message, "not the target this sidecar committed to") {
		t.Fatalf("Message = %q", e.Message)
	}
	if r := f.init(t); !r.Rebound || r.Created {
		t.Fatalf("Init of the replaced file = %+v", r)
	}
	if r := f.drain(t); r.Lines != 1 {
		t.Fatalf("Drain after Init = %+v", r)
	}

	// A file whose committed part differs is refused by Init too, and left alone.
	replace("one\nTWO\nthree\n")
	_, err = Init(context.Background(), f.target)
	wantKind(t, err, KindTargetMissing)
	_, err = Drain(context.Background(), f.target, DrainOptions{Spool: f.spool})
	wantKind(t, err, KindTargetMissing)
	if b, _ := os.ReadFile(f.target); string(b) != "one\nTWO\nthree\n" {
		t.Fatalf("the refused file was changed: %q", b)
	}
}

func TestDrainCreate(t *testing.T) {
	f := newBareFixture(t)
	j := f.openJournal(t, "j", nil)
	j.AppendString("first")
	create := DrainOptions{Spool: f.spool, Create: true}
	if r, err := Drain(context.Background(), f.target, create); err != nil || r.Lines != 1 {
		t.Fatalf("Drain with Create = %+v, %v", r, err)
	}
	st, err := Status(f.target, "")
	if err != nil || !st.HasManifest || len(st.TargetID) != 32 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	j.AppendString("second")
	if r, err := Drain(context.Background(), f.target, create); err != nil || r.Lines != 1 { // exists: no-op create
		t.Fatalf("second Drain with Create = %+v, %v", r, err)
	}
	j.AppendString("third")
	if r := f.drain(t); r.Lines != 1 { // created: no flag needed
		t.Fatalf("Drain = %+v", r)
	}
	if r := f.init(t); r.Created || r.TargetID != st.TargetID {
		t.Fatalf("Init = %+v, want target %s as it is", r, st.TargetID)
	}
	// Retire takes it too (a one-shot job that may start a target).
	j2 := f.openJournal(t, "job", nil)
	j2.AppendString("from the job")
	other := filepath.Join(f.dir, "other.log")
	if n, err := Retire(context.Background(), other, DrainOptions{Journals: []string{j2.Path()}, Create: true}); err != nil || n != 1 {
		t.Fatalf("Retire with Create = %d, %v", n, err)
	}
	if got := strings.Join(targetLines(t, other), ","); got != "from the job" {
		t.Fatalf("other = %q", got)
	}
	if got := strings.Join(targetLines(t, f.target), ","); got != "first,second,third" {
		t.Fatalf("target = %q", got)
	}
	if st2, _ := Status(f.target, ""); st2.TargetID != st.TargetID {
		t.Fatalf("the target id changed: %s -> %s", st.TargetID, st2.TargetID)
	}
}

// InitInFormat makes a target older builds drain too (format 2), switches it back,
// and refuses a format that does not exist (the CLI's `init --manifest-format` had
// no binding).
func TestInitInFormatMakesOrSwitchesTheManifestFormat(t *testing.T) {
	f := newBareFixture(t)
	ctx := context.Background()
	format := func() int {
		t.Helper()
		s, err := Status(f.target, "")
		if err != nil {
			t.Fatal(err)
		}
		return s.ManifestFormat
	}
	if r, err := InitInFormat(ctx, f.target, 2); err != nil || !r.Created || format() != 2 {
		t.Fatalf("InitInFormat 2: %+v %v, format %d", r, err, format())
	}
	if r, err := InitInFormat(ctx, f.target, 3); err != nil || r.Created || format() != 3 {
		t.Fatalf("InitInFormat 3: %+v %v, format %d", r, err, format())
	}
	if _, err := Init(ctx, f.target); err != nil || format() != 3 {
		t.Fatalf("Init keeps the format: %v, format %d", err, format())
	}
	for _, bad := range []int{1, 4, -2} {
		if _, err := InitInFormat(ctx, f.target, bad); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("InitInFormat %d: %v, want ErrInvalidArgument", bad, err)
		}
	}
}
