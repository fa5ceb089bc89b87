"""Build hook: ship the shared library inside the package.

`pip install ./bindings/python` (after `cargo build --release`) copies
`target/release/libtributary.so` of the repository this file lives in (or the file
named by $TRIBUTARY_LIB at build time) into the installed package as
`tributary/_lib/libtributary.so`, and records the repository's path so that an
installation made before the library was built still finds it later. Everything else
is declared in pyproject.toml.
"""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIB_FILES = ("libtributary.so", "libtributary.dylib")


class build_py_with_library(build_py):
    def run(self):
        super().run()
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
            print(
                "tributary: no built library found (run `cargo build --release` in the repository); "
                f"the package will look for it in {REPO / 'target' / 'release'} at import time"
            )
        (pkg / "_build_info.py").write_text(
            '"""Written by setup.py at build time."""\n\n'
            f"REPO_ROOT = {str(REPO)!r}\n"
        )


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": build_py_with_library}, distclass=BinaryDistribution)
