#!/usr/bin/env bash
# Python: build the release library, pip-install bindings/python into a venv under
# target/ (so the installed package ships its own copy of libtributary.so), and run its
# pytest suite against that installation. No tests collected (pytest exit 5) is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo_root="$PWD"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
unset TRIBUTARY_LIB   # test the library shipped inside the package

cargo build --release -p tributary --lib
# tests/test_cli_metrics.py runs the `tributary` binary (compact's metrics, its status line)
cargo build --release -p tributary-cli --bin tributary

venv="$PWD/target/python-venv"
python="${PYTHON:-python3}"
if ! "$venv/bin/python" -c "import sys" 2>/dev/null; then
  rm -rf "$venv"
  if ! "$python" -m venv "$venv"; then
    # Debian's python3 needs python3-venv for ensurepip
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-venv || { apt-get update -q && apt-get install -y -q python3-venv; }
    rm -rf "$venv"
    "$python" -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "pytest>=7"
# tests/test_cli_metrics.py checks compact's metrics with Prometheus's own text-format parser
"$venv/bin/python" -m pip install -q --disable-pip-version-check "prometheus-client>=0.17"
# --force-reinstall: ship the library just built, even if the package version is unchanged
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall ./bindings/python

# The installed package (not the source tree) must load its shipped library.
(cd / && "$venv/bin/python" - <<'PY'
import os, tributary
pkg = os.path.dirname(tributary.__file__)
print(f"tributary {tributary.__version__} from {pkg}, library {tributary.LIB_VERSION} at {tributary.LIB_PATH}")
assert str(tributary.LIB_PATH).startswith(pkg), "the installed package did not load its shipped library"
PY
)

cd bindings/python
rc=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests || rc=$?
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure"
  exit 1
fi
[ "$rc" = 0 ] || exit "$rc"
# The fan-in -> process -> fan-out example (issue 7's Python twin) must pass as documented.
"$venv/bin/python" examples/pipeline.py

# A wheel that installs on another machine without Rust: `pip wheel` builds one tagged
# py3-none-<platform> with the library inside; a fresh venv elsewhere installs it with
# cargo off the PATH and no repository in sight, and imports the shipped library.
echo "--- pip wheel, installed in a fresh venv without cargo"
whl="$(mktemp -d)"
trap 'rm -rf "$whl"' EXIT
"$venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$whl/dist" .
ls "$whl"/dist/tributary-*-py3-none-linux_*.whl >/dev/null
"$venv/bin/python" -m venv "$whl/venv"
env -u TRIBUTARY_LIB PATH=/usr/bin:/bin "$whl/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index "$whl"/dist/*.whl
mv "$repo_root/target/release/libtributary.so" "$repo_root/target/release/libtributary.so.hidden"
rc=0
(cd "$whl" && env -u TRIBUTARY_LIB PATH=/usr/bin:/bin "$whl/venv/bin/python" - <<'PY') || rc=$?
import os, tempfile, tributary
pkg = os.path.dirname(tributary.__file__)
assert str(tributary.LIB_PATH).startswith(pkg), f"loaded {tributary.LIB_PATH}, not the wheel's copy in {pkg}"
with tempfile.TemporaryDirectory() as d, tributary.Journal(os.path.join(d, "w.journal")) as j:
    j.append("from a wheel")
print(f"wheel: ok ({tributary.LIB_PATH})")
PY
mv "$repo_root/target/release/libtributary.so.hidden" "$repo_root/target/release/libtributary.so"
exit "$rc"
