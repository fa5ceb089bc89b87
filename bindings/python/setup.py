"""Build hook: build the shared library and ship it inside the package.

`pip install ./bindings/python` (and `pip wheel ./bindings/python`) runs
`cargo build --release -p tributary --lib` in the repository this file lives in
(incremental: quick when the library is up to date), then copies
`target/release/libtributary.so` into the package as `tributary/_lib/libtributary.so`.
$TRIBUTARY_LIB names a library to ship instead (no cargo run). Without cargo and
without a built library the build fails and says what to install, rather than
installing a package that cannot import. The wheel is tagged `py3-none-<platform>`:
it carries a native library but no Python extension (ctypes), so it installs on any
Python 3 of that platform, without Rust. Everything else is declared in pyproject.toml.
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIB_FILES = ("libtributary.so", "libtributary.dylib")


def build_library() -> None:
    """`cargo build --release -p tributary --lib` in the repository, when there is one
    and cargo is installed; a clear error when the build fails."""
    if os.environ.get("TRIBUTARY_LIB") or not (REPO / "Cargo.toml").is_file():
        return
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        if any((REPO / "target" / "release" / name).is_file() for name in LIB_FILES):
            print("tributary: cargo not found; shipping the library already built in target/release")
            return
        raise SystemExit(
            "tributary: cannot build libtributary: cargo (Rust >= 1.89) is not installed. Install Rust "
            "(https://rustup.rs), or build the library elsewhere and set TRIBUTARY_LIB=/path/to/libtributary.so"
        )
    print("tributary: building libtributary with cargo (the first build takes a few minutes)")
    env = {**os.environ, "CARGO_BUILD_JOBS": os.environ.get("CARGO_BUILD_JOBS", "2")}
    if subprocess.run([cargo, "build", "--release", "-p", "tributary", "--lib"], cwd=REPO, env=env).returncode:
        raise SystemExit("tributary: `cargo build --release -p tributary --lib` failed (its output is above)")


class build_py_with_library(build_py):
    def run(self):
        super().run()
        build_library()
        pkg = Path(self.build_lib) / "tributary"
        candidates = []
        if os.environ.get("TRIBUTARY_LIB"):
            candidates.append(Path(os.environ["TRIBUTARY_LIB"]))
        candidates += [REPO / "target" / "release" / name for name in LIB_FILES]
        for lib in candidates:
            if lib.is_file():
                dest = pkg / "_lib"
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(lib, dest / lib.name)
                print(f"tributary: shipping {lib} in the package")
                break
        else:
            raise SystemExit(
                "tributary: no libtributary to ship: $TRIBUTARY_LIB is not a file, or this is not a checkout of "
                "the repository (install from a checkout, or set TRIBUTARY_LIB)"
            )
        (pkg / "_build_info.py").write_text(
            '"""Written by setup.py at build time."""\n\n'
            f"REPO_ROOT = {str(REPO)!r}\n"
        )


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self):
        return True


try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]


class bdist_wheel_any_python(bdist_wheel):
    """py3-none-<platform>: the native library is loaded with ctypes, so the wheel does
    not depend on the Python version or ABI, only on the platform."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    cmdclass={"build_py": build_py_with_library, "bdist_wheel": bdist_wheel_any_python},
    distclass=BinaryDistribution,
)
