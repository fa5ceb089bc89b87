package tributary

// The Go side's constants against include/tributary.h, the header this package is
// compiled with (link_repo.go puts <repo>/include on the include path). Go test files
// cannot use cgo, so the header is read as text.

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// headerConstants returns every "#define TRIB_* <integer>" of the repository's header.
func headerConstants(t *testing.T) map[string]int64 {
	t.Helper()
	path := filepath.Join("..", "..", "include", "tributary.h")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v: these tests run in bindings/go of a tributary checkout", err)
	}
	defer f.Close()
	define := regexp.MustCompile(`^#define (TRIB_\w+) (-?[0-9]+)\s*$`)
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := define.FindStringSubmatch(sc.Text()); m != nil {
			v, err := strconv.ParseInt(m[2], 10, 64)
			if err != nil {
				t.Fatalf("%s: %s: %v", path, sc.Text(), err)
			}
			out[m[1]] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// The header read here is the one the package was compiled with.
	if got := out["TRIB_ABI_VERSION"]; got != int64(ABIVersion) {
		t.Fatalf("%s: TRIB_ABI_VERSION is %d, but the package was compiled with %d: a different header?",
			path, got, ABIVersion)
	}
	return out
}

// TestEveryHeaderKindIsAGoKind: every TRIB_E_* code of the header has an ErrorKind
// with a name and a sentinel, and every ErrorKind is a code of the header (a kind
// added to the header, or removed from it, fails here until errors.go follows).
func TestEveryHeaderKindIsAGoKind(t *testing.T) {
	consts := headerConstants(t)
	codes := map[ErrorKind]string{}
	for name, v := range consts {
		if strings.HasPrefix(name, "TRIB_E_") {
			codes[ErrorKind(v)] = name
		}
	}
	if len(codes) < 19 {
		t.Fatalf("found only %d TRIB_E_* codes in the header: %v", len(codes), codes)
	}
	for k, name := range codes {
		if _, ok := kindNames[k]; !ok {
			t.Errorf("%s (%d) of include/tributary.h has no ErrorKind: add Kind... = C.%s to errors.go, "+
				"with its name (kindNames) and its sentinel (kindSentinels)", name, int(k), name)
		} else if _, ok := kindSentinels[k]; !ok {
			t.Errorf("%s (%d): ErrorKind %v has no sentinel in kindSentinels", name, int(k), k)
		}
	}
	for k := range kindNames {
		if _, ok := codes[k]; !ok {
			t.Errorf("ErrorKind %d (%v) is not a TRIB_E_* code of include/tributary.h", int(k), k)
		}
	}
	for k := range kindSentinels {
		if _, ok := codes[k]; !ok {
			t.Errorf("kindSentinels has ErrorKind %d, which is not a TRIB_E_* code of include/tributary.h", int(k))
		}
	}
}
