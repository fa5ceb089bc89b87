#!/usr/bin/env bash
# C ABI: the checked-in include/tributary.h is what the pinned cbindgen generates; the
# header compiles as C and C++ without warnings; tests/c/ compiles with
# -Wall -Wextra -Werror against it and the release cdylib, and runs clean under valgrind
# (no definite leaks, no invalid reads or writes; tests/c/valgrind.supp lists the known
# false positives).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

cargo build --release -p tributary --lib
cargo test --release --test header_drift

if ! command -v valgrind >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q valgrind || { apt-get update -q && apt-get install -y -q valgrind; }
fi
CC="${CC:-cc}"
CXX="${CXX:-c++}"

out=target/c-test
mkdir -p "$out"
lib="$PWD/target/release"
warn=(-Wall -Wextra -Werror -pedantic)

# The header alone, as C11 and as C++11 (cbindgen's cpp_compat guards).
"$CC" -std=c11 "${warn[@]}" -fsyntax-only -x c include/tributary.h
if command -v "$CXX" >/dev/null; then
  "$CXX" -std=c++11 "${warn[@]}" -fsyntax-only -x c++ include/tributary.h
fi

# The C test must call every function the header declares.
missing=0
for fn in $(grep -oE '\btrib_[a-z_]+\(' include/tributary.h | tr -d '(' | sort -u); do
  grep -q "\b$fn(" tests/c/test_tributary.c || { echo "tests/c/test_tributary.c never calls $fn"; missing=1; }
done
[ "$missing" = 0 ]

"$CC" -std=c11 "${warn[@]}" -g -O1 -I include tests/c/test_tributary.c \
  -L "$lib" -Wl,-rpath,"$lib" -ltributary -lpthread -o "$out/test_tributary"

export TMPDIR="${TMPDIR:-/tmp}"
# trib_debug_panic's panics are expected; keep their report to one line each.
export RUST_BACKTRACE=0
echo "--- native run"
"$out/test_tributary"
echo "--- valgrind run"
vlog="$out/valgrind.log"
rc=0
# tests/c/valgrind.supp: known false positives only, each narrowed to its spot and explained.
valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
  --suppressions=tests/c/valgrind.supp --log-file="$vlog" "$out/test_tributary" || rc=$?
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|All heap blocks" "$vlog" |
  sed 's/^==[0-9]*== */valgrind: /'
if [ "$rc" != 0 ]; then
  echo "valgrind run FAILED (exit $rc); full log:"
  cat "$vlog"
  exit 1
fi
echo "valgrind: clean (no errors, no definite leaks)"

# The installed library, found the C way: scripts/install into a prefix, then a program
# built with nothing but `pkg-config --cflags --libs tributary` (shared and --static).
echo "--- scripts/install + pkg-config"
command -v pkg-config >/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q pkgconf >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q pkgconf >/dev/null; }
}
prefix="$PWD/$out/prefix"
rm -rf "$prefix"
scripts/install "$prefix"
cat >"$out/hello.c" <<'C'
#include <stdio.h>
#include <tributary.h>
int main(void) {
    printf("tributary %s, ABI %u\n", trib_version(), trib_abi_version());
    return trib_abi_version() == TRIB_ABI_VERSION ? 0 : 1;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046 # the flags are words
"$CC" -std=c11 "${warn[@]}" "$out/hello.c" $(pkg-config --cflags --libs tributary) -o "$out/hello-shared"
LD_LIBRARY_PATH="$prefix/lib" "$out/hello-shared"
rm "$prefix/lib/libtributary.so" # so that the linker takes the static library
# shellcheck disable=SC2046
"$CC" -std=c11 "${warn[@]}" "$out/hello.c" $(pkg-config --static --cflags --libs tributary) -o "$out/hello-static"
"$out/hello-static"
! ldd "$out/hello-static" | grep -q libtributary || { echo "hello-static links libtributary.so"; exit 1; }
echo "pkg-config: ok (shared and static)"
