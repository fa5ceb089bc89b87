#!/usr/bin/env bash
# Go binding (bindings/go): gofmt, go vet, and go test -race over the cgo package
# against the release library — the API, every error kind provoked for real (lock
# timeout/lost, corrupt manifest and journal row, truncated target, ...), 16
# goroutines on one journal, fan-in/fan-out with concurrent drains and following
# readers, readers following a target that drains rotate (cursors, resume, retention),
# Rust CLI + Python + Go writers on one target — then builds and runs the
# fan-in → process → fan-out example (examples/pipeline).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
repo="$PWD"

# Go: on PATH, or where the official tarball installs it. go.mod asks for Go 1.22;
# an older Go (>= 1.21) fetches that toolchain from the Go module proxy by itself.
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH="$PATH:/usr/local/go/bin"
fi
if ! command -v go >/dev/null; then
  echo "go is not installed: skipping the Go binding (install Go >= 1.22 from go.dev)"
  exit 77
fi
export CGO_ENABLED=1
go version

# sqlite3 tampers a journal row for the corrupt-journal-row test (skipped without it).
if ! command -v sqlite3 >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q sqlite3 || { apt-get update -q && apt-get install -y -q sqlite3; } ||
    echo "warning: could not install sqlite3; TestErrCorruptJournalRow will be skipped"
fi

# The library the package links (target/release/libtributary.so, by rpath) and the
# CLI the tests drive (target/release/tributary).
cargo build --release -p tributary -p tributary-cli

cd bindings/go
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "gofmt: these files are not formatted (run gofmt -w):"
  echo "$unformatted"
  exit 1
fi
echo "--- go vet ./..."
go vet ./...

echo "--- go test -race -count=1 ./..."
log="$repo/target/go-test.log"
mkdir -p "$repo/target"
export RUST_BACKTRACE=0 # TestErrPanic's deliberate panic: keep its report short
rc=0
go test -race -count=1 -timeout 10m -v ./... >"$log" 2>&1 || rc=$?
# The summary: every skipped or failed test with its reason, the counts, and go test's
# own per-package result lines.
# (go test -v prints a test's t.Skip reason just before its "--- SKIP" line)
grep -E -B1 '^\s*--- SKIP' "$log" | grep -v -- '^--$' || true
grep -E '^\s*--- FAIL' "$log" || true
echo "tests and examples: $(grep -cE '^--- PASS' "$log") passed, $(grep -cE '^--- FAIL' "$log") failed," \
  "$(grep -cE '^--- SKIP' "$log") skipped (subtests: $(grep -cE '^\s+--- PASS' "$log") passed," \
  "$(grep -cE '^\s+--- FAIL' "$log") failed)"
grep -E '^(ok|FAIL|panic:)|^\?\s' "$log" || true
if [ "$rc" != 0 ]; then
  echo "go test FAILED (exit $rc); the last 150 lines of $log:"
  tail -n 150 "$log"
  exit 1
fi

# An installed library, found through pkg-config (-tags tributary_external): the way a
# module fetched outside this repository links.
echo "--- -tags tributary_external (scripts/install + pkg-config)"
command -v pkg-config >/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q pkgconf >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q pkgconf >/dev/null; }
}
gprefix="$repo/target/go-prefix"
rm -rf "$gprefix"
"$repo/scripts/install" "$gprefix"
PKG_CONFIG_PATH="$gprefix/lib/pkgconfig" LD_LIBRARY_PATH="$gprefix/lib" \
  go test -count=1 -tags tributary_external -run 'TestAppenderPushFlushInOrder|TestWriter$' .

# the logging benchmark (its own module: it needs lumberjack) must keep building
echo "--- docs/go.md quick start, built outside the repository"
# The program is taken from the docs (so the docs cannot drift from what works), in a
# module of its own outside the checkout: once as documented (a replace directive, the
# checkout's library), once vendored and linked against the installed prefix.
qs="$(mktemp -d)"
awk '/^cat > main.go <<.EOF.$/{on=1; next} on && /^EOF$/{exit} on' "$repo/docs/go.md" >"$qs/main.go"
grep -q 'tributary.Init' "$qs/main.go" || { echo "could not extract the quick start from docs/go.md"; exit 1; }
check_quick_start() {
  grep -q '^drained 13 lines' "$1" && grep -q 'verify: consistent=true' "$1" ||
    { echo "the quick start printed something else:"; cat "$1"; exit 1; }
}
(
  cd "$qs"
  go mod init example.com/hello >/dev/null 2>&1
  go mod edit -replace github.com/tributary-dev/tributary/bindings/go="$repo/bindings/go"
  go mod tidy >/dev/null 2>&1
  go run . >"$qs/out-replace.txt"
  check_quick_start "$qs/out-replace.txt"
  echo "as documented (replace, the checkout's library): $(head -1 "$qs/out-replace.txt")"
  go mod vendor
  PKG_CONFIG_PATH="$gprefix/lib/pkgconfig" go build -mod=vendor -tags tributary_external -o hello .
  LD_LIBRARY_PATH="$gprefix/lib" ./hello >"$qs/out-vendored.txt"
  check_quick_start "$qs/out-vendored.txt"
  ! ldd ./hello | grep -q "$repo/target" || { echo "the vendored build linked the checkout's library"; exit 1; }
  echo "vendored, -tags tributary_external against $gprefix: $(head -1 "$qs/out-vendored.txt")"
)
rm -rf "$qs"

echo "--- README's Go example (vet only: it names folders of a real deployment)"
# Taken from README.md's "## Go" block (an outside tester found it did not compile:
# values declared and never used): its import line dropped, the rest put in a package
# with the imports it uses.
rd="$(mktemp -d "$repo/bindings/go/readme-example.XXXXXX")"
{
  printf 'package readme\n\nimport (\n\t"context"\n\t"errors"\n\t"fmt"\n\t"log"\n\n'
  printf '\ttributary "github.com/tributary-dev/tributary/bindings/go"\n)\n\n'
  awk '/^## Go$/{g=1} g && /^```go$/{on=1; next} on && /^```$/{exit} on && !/^import /' "$repo/README.md"
} >"$rd/readme.go"
grep -q 'tributary.Drain' "$rd/readme.go" || { echo "could not extract the Go example from README.md"; exit 1; }
(cd "$rd" && go vet .) || { echo "README.md's Go example does not build:"; cat -n "$rd/readme.go"; rm -rf "$rd"; exit 1; }
rm -rf "$rd"
echo "README.md's Go example builds"

echo "--- bench (vet only; run it with scripts/bench-logging)"
(cd bench && go vet .)
echo "--- examples/pipeline"
go build -o "$repo/target/go-pipeline" ./examples/pipeline
"$repo/target/go-pipeline"
