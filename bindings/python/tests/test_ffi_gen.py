"""The generated ctypes declarations (``tributary/_ffi_gen.py``) against their source,
``include/tributary.h``: the checked-in file is what ``gen_ffi.py`` makes of the header
now (drift), the C compiler lays every struct out as ctypes does (layout), every
prototype of the table is applied to the library, and every error kind of the header has
its exception class.

These tests read the repository (the header, the generator and the checked-in module),
so they run from a checkout: ``bindings/python/tests`` is three levels below its root.
"""

from __future__ import annotations

import ctypes
import difflib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest

import tributary
from tributary import _ffi, _ffi_gen
from tributary.errors import TributaryError, error_class

REPO = Path(__file__).resolve().parents[3]
HEADER = REPO / "include" / "tributary.h"
GENERATOR = REPO / "bindings" / "python" / "gen_ffi.py"
CHECKED_IN = REPO / "bindings" / "python" / "src" / "tributary" / "_ffi_gen.py"


def _load_generator():
    for path in (HEADER, GENERATOR, CHECKED_IN):
        assert path.is_file(), f"{path} not found: these tests run from a tributary checkout"
    spec = importlib.util.spec_from_file_location("gen_ffi", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


# ---- drift ------------------------------------------------------------------------------------


def test_the_checked_in_declarations_are_generated_from_the_header():
    want = gen.render(HEADER.read_text(encoding="utf-8"))
    have = CHECKED_IN.read_text(encoding="utf-8")
    if have != want:
        diff = "".join(
            list(
                difflib.unified_diff(
                    have.splitlines(True),
                    want.splitlines(True),
                    "checked in: bindings/python/src/tributary/_ffi_gen.py",
                    "generated from include/tributary.h",
                )
            )[:60]
        )
        pytest.fail(
            "bindings/python/src/tributary/_ffi_gen.py is out of date with include/tributary.h "
            f"(or was edited by hand): regenerate it with `{gen.REGENERATE}` from the repository root "
            f"and commit it.\n{diff}",
            pytrace=False,
        )


def test_the_imported_declarations_are_the_checked_in_ones():
    """The installed package carries the checked-in module (a stale installation would
    test old declarations)."""
    imported = Path(_ffi_gen.__file__).read_text(encoding="utf-8")
    assert imported == CHECKED_IN.read_text(encoding="utf-8"), (
        f"{_ffi_gen.__file__} (imported) differs from {CHECKED_IN}: reinstall the package "
        "(pip install ./bindings/python)"
    )


def test_the_generator_refuses_what_it_does_not_understand():
    """A declaration the generator cannot translate is an error naming it, not skipped."""
    cases = [
        ("typedef struct trib_x { float ratio; } trib_x;", "float"),
        ("typedef struct trib_x { struct trib_y inner; } trib_x;", "trib_y"),
        ("typedef union trib_u { int a; } trib_u;", "union"),
        ("#if TRIB_ABI_VERSION > 2\n#endif", "#if"),
        ("#define TRIB_NAME \"text\"", "TRIB_NAME"),
        ("int trib_f(int16_t x);", "int16_t"),
    ]
    for header, named in cases:
        with pytest.raises(gen.HeaderError, match=named):
            gen.render(header)


# ---- layout ------------------------------------------------------------------------------------


def _c_compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler (cc or gcc) on PATH: the layout check needs one (cargo needs one too)"
    return cc


def _c_layout(tmp_path: Path) -> Tuple[Dict[str, Tuple[int, int]], Dict[Tuple[str, str], Tuple[int, int]], Dict[str, int]]:
    """What the C compiler makes of the header: each struct's (size, alignment), each
    field's (offset, size), each TRIB_* constant's value."""
    header = gen.parse(HEADER.read_text(encoding="utf-8"))
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "tributary.h"', "", "int main(void) {"]
    for s in header.structs:
        t = f"struct {s.name}"
        lines.append(f'    printf("struct {s.name} %zu %zu\\n", sizeof({t}), _Alignof({t}));')
        for f in s.fields:
            lines.append(
                f'    printf("field {s.name} {f.name} %zu %zu\\n", offsetof({t}, {f.name}), '
                f"sizeof((({t} *)0)->{f.name}));"
            )
    for name, _ in header.constants:
        lines.append(f'    printf("const {name} %lld\\n", (long long)({name}));')
    lines += ["    return 0;", "}", ""]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    cmd = [_c_compiler(), "-std=c11", "-Wall", "-Werror", f"-I{HEADER.parent}", str(src), "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(cmd)} failed:\n{built.stderr}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    structs, fields, constants = {}, {}, {}
    for line in out.splitlines():
        what, *rest = line.split()
        if what == "struct":
            structs[rest[0]] = (int(rest[1]), int(rest[2]))
        elif what == "field":
            fields[(rest[0], rest[1])] = (int(rest[2]), int(rest[3]))
        else:
            constants[rest[0]] = int(rest[1])
    return structs, fields, constants


def _layout_mismatches(c_structs, c_fields, classes: Sequence[type]) -> List[str]:
    """Every difference between the C compiler's layout and the ctypes classes'."""
    problems = []
    by_name = {cls.__name__: cls for cls in classes}
    for name in sorted(set(c_structs) ^ set(by_name)):
        where = "the header" if name in c_structs else "the ctypes module"
        problems.append(f"struct {name} is only in {where}")
    for name, (size, align) in c_structs.items():
        cls = by_name.get(name)
        if cls is None:
            continue
        if (ctypes.sizeof(cls), ctypes.alignment(cls)) != (size, align):
            problems.append(
                f"struct {name}: C sizeof {size}, alignment {align}; "
                f"ctypes {ctypes.sizeof(cls)}, {ctypes.alignment(cls)}"
            )
        c_names = [f for (s, f) in c_fields if s == name]
        py_names = [f[0] for f in cls._fields_]
        if c_names != py_names:
            problems.append(f"struct {name}: C fields {c_names}, ctypes fields {py_names}")
        for field in c_names:
            offset, fsize = c_fields[(name, field)]
            d = getattr(cls, field, None)
            got = (d.offset, d.size) if d is not None else None
            if got != (offset, fsize):
                problems.append(f"{name}.{field}: C offset {offset}, size {fsize}; ctypes (offset, size) {got}")
    return problems


def test_struct_layouts_are_the_c_compilers(tmp_path: Path):
    c_structs, c_fields, c_constants = _c_layout(tmp_path)
    assert len(c_structs) >= 11 and len(c_fields) >= 60, (c_structs, c_fields)
    problems = _layout_mismatches(c_structs, c_fields, _ffi_gen.STRUCTS)
    assert not problems, "the ctypes structures do not match the C compiler's layout:\n  " + "\n  ".join(problems)
    assert c_constants == _ffi_gen.CONSTANTS, "TRIB_* constants differ between the C compiler and _ffi_gen.py"


def test_the_layout_check_sees_a_wrong_or_missing_field(tmp_path: Path):
    """The comparison above is not vacuous: a field of the wrong size (as a hand edit or
    a wrong type mapping would make it) and a missing field are reported."""
    c_structs, c_fields, _ = _c_layout(tmp_path)

    class trib_drain_report(ctypes.Structure):  # `journals` as one byte instead of a size_t
        _fields_ = [
            (name, ctypes.c_uint8 if name == "journals" else ty) for name, ty in _ffi_gen.trib_drain_report._fields_
        ]

    class trib_cursor(ctypes.Structure):  # without its last field
        _fields_ = _ffi_gen.trib_cursor._fields_[:-1]

    mutants = {"trib_drain_report": trib_drain_report, "trib_cursor": trib_cursor}
    classes = [mutants.get(c.__name__, c) for c in _ffi_gen.STRUCTS]
    problems = _layout_mismatches(c_structs, c_fields, classes)
    assert any(p.startswith("trib_drain_report.journals: C offset") for p in problems), problems
    assert any(p.startswith("struct trib_cursor: C sizeof") for p in problems), problems
    assert any(p.startswith("struct trib_cursor: C fields") for p in problems), problems
    assert all(any(m in p for m in mutants) for p in problems), problems  # nothing else


# ---- prototypes and error kinds -----------------------------------------------------------------


def test_every_prototype_of_the_table_is_applied_to_the_library():
    header = gen.parse(HEADER.read_text(encoding="utf-8"))
    assert [f.name for f in header.functions] == list(_ffi_gen.FUNCTIONS)
    for name, (restype, argtypes) in _ffi_gen.FUNCTIONS.items():
        fn = getattr(_ffi.lib, name)
        assert fn.restype is restype, f"{name}: restype {fn.restype}, the table says {restype}"
        assert tuple(fn.argtypes) == tuple(argtypes), f"{name}: argtypes {fn.argtypes}, the table says {argtypes}"


def test_every_error_kind_of_the_header_has_its_exception_class():
    kinds = {name: code for name, code in _ffi_gen.CONSTANTS.items() if name.startswith("TRIB_E_")}
    assert len(kinds) >= 19, kinds
    for name, code in kinds.items():
        cls = error_class(code)
        assert cls is not TributaryError, f"{name} ({code}) has no exception class in tributary/errors.py"
        assert cls.code == code
        assert cls.kind == _ffi.lib.trib_result_name(code).decode(), (
            f"{cls.__name__}.kind is {cls.kind!r}; the library names {name} {_ffi.lib.trib_result_name(code)!r}"
        )
    # and no class for a code the header does not define
    classes = [getattr(tributary.errors, n) for n in tributary.errors.__all__]
    coded = [c for c in classes if isinstance(c, type) and issubclass(c, TributaryError) and c.code != -1]
    assert sorted(c.code for c in coded) == sorted(kinds.values()), "error classes and TRIB_E_* codes differ"
