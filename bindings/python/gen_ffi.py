#!/usr/bin/env python3
"""Generate the Python binding's ctypes declarations from the C header.

This file owns the translation of ``include/tributary.h`` (cbindgen output) into
``bindings/python/src/tributary/_ffi_gen.py``: every ``#define TRIB_*`` integer
constant, every opaque handle, every struct (fields in order) and every function
prototype (name -> restype, argtypes). The generated module is checked in;
``tests/test_ffi_gen.py`` regenerates it and fails when the checked-in copy differs, so
the header stays the one source of the ABI's tables.

Usage (from anywhere; paths are relative to this file)::

    python3 bindings/python/gen_ffi.py          # rewrite _ffi_gen.py
    python3 bindings/python/gen_ffi.py --check  # exit 1 if _ffi_gen.py is out of date

Standard library only. The parser is small and strict on purpose: the header is
regular cbindgen output, and anything it does not recognise (a preprocessor
conditional other than ``#ifdef``/``#ifndef``, a declaration that is not a typedef'd
struct or a ``trib_*`` function, a C type without a ctypes mapping below) is an error
that names the declaration, never something skipped silently.

How C types become ctypes (the binding relies on these conventions):

* ``uint32_t``, ``uint64_t``, ``int64_t``, ``size_t``, ``int``, ``bool``, ``uint8_t``:
  the ctypes scalar of the same size and signedness; ``double``: ``c_double``; ``void`` (a return type): None.
* ``char name[N]`` (a struct field): ``c_char * N`` (N a number or a ``TRIB_*``
  constant).
* ``struct trib_x`` declared with fields: the generated ``Structure`` ``trib_x``;
  ``struct trib_x *``: ``POINTER(trib_x)``.
* an opaque ``struct trib_x *`` (a handle): ``trib_x_p``, an alias of ``c_void_p``. A
  handle is the address the library returned (None is NULL); ctypes could not check a
  handle's kind anyway (a ``c_void_p`` parameter accepts any pointer), the library does
  (a handle of the wrong type is ``TRIB_E_INVALID_ARG``).
* ``char *`` / ``const char *``: ``c_char_p`` (NUL-terminated text, or a buffer the
  library writes a NUL-terminated string to).
* ``const uint8_t *``: ``c_char_p``, so that Python ``bytes`` can be passed as they are
  (the length always travels in a separate ``size_t``, so NULs in them are fine).
* bytes the library hands out, ``const uint8_t **``: ``POINTER(POINTER(c_uint8))``, read
  with their length (``ctypes.string_at``), never as a NUL-terminated string.
* any other ``T *``: ``POINTER(T)``; ``T **``: ``POINTER(POINTER(T))``.
* a function-pointer typedef ``typedef R (*trib_x_fn)(params)`` (a callback):
  ``trib_x_fn = CFUNCTYPE(R, *params)``, its parameters mapped as above (text arrives
  in the callback as ``bytes``); a parameter of type ``trib_x_fn`` takes it (or None for
  NULL).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Set, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HEADER = REPO / "include" / "tributary.h"
OUTPUT = HERE / "src" / "tributary" / "_ffi_gen.py"
#: The command that regenerates OUTPUT (quoted in the drift test's failure message).
REGENERATE = "python3 bindings/python/gen_ffi.py"

#: C scalar types and their ctypes.
SCALARS = {
    "bool": "c_bool",
    "char": "c_char",
    "double": "c_double",
    "int": "c_int",
    "int64_t": "c_int64",
    "size_t": "c_size_t",
    "uint8_t": "c_uint8",
    "uint32_t": "c_uint32",
    "uint64_t": "c_uint64",
}
#: The only headers the C header may include (they define the scalars above).
STANDARD_INCLUDES = {"<stdbool.h>", "<stddef.h>", "<stdint.h>"}


class HeaderError(Exception):
    """The header has something this generator does not understand."""


class CType(NamedTuple):
    """A parsed C type: base name, whether it is ``struct <base>``, pointer depth,
    whether the pointed-to base is const, and an array dimension (a field's ``[N]``)."""

    base: str
    is_struct: bool
    pointers: int
    base_const: bool
    array: Optional[str]

    def c(self) -> str:
        text = ("const " if self.base_const else "") + ("struct " if self.is_struct else "") + self.base
        return text + (" " + "*" * self.pointers if self.pointers else "") + (f"[{self.array}]" if self.array else "")


class Decl(NamedTuple):
    name: str
    type: CType


class Struct(NamedTuple):
    name: str
    fields: Tuple[Decl, ...]


class Function(NamedTuple):
    name: str
    restype: CType
    params: Tuple[Decl, ...]


class Header(NamedTuple):
    constants: Tuple[Tuple[str, int], ...]
    opaque: Tuple[str, ...]
    structs: Tuple[Struct, ...]
    functions: Tuple[Function, ...]
    #: Function-pointer typedefs (callbacks), as a Function named after the typedef.
    callbacks: Tuple[Function, ...] = ()


# ---- parsing --------------------------------------------------------------------------------

_COMMENT_OR_STRING = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"', re.S)
_INT = re.compile(r"^(-?(?:0[xX][0-9a-fA-F]+|[0-9]+))[uUlL]*$")


def _strip_comments(text: str) -> str:
    """The header without comments; line breaks are kept so directives stay on their
    own lines."""

    def repl(m: "re.Match[str]") -> str:
        s = m.group(0)
        return s if s.startswith('"') else "\n" * s.count("\n") or " "

    return _COMMENT_OR_STRING.sub(repl, text)


def _preprocess(text: str) -> Tuple[str, List[Tuple[str, int]]]:
    """Apply the header's conditionals (compiled as C: ``__cplusplus`` undefined) and
    collect its ``#define``s. Returns the remaining code and the ``TRIB_*`` integer
    constants in order."""
    defined: Set[str] = set()
    constants: List[Tuple[str, int]] = []
    active: List[bool] = []  # one entry per open conditional: is its branch taken?
    code: List[str] = []
    for n, line in enumerate(text.split("\n"), 1):
        s = line.strip()
        on = all(active)
        if not s.startswith("#"):
            if on:
                code.append(line)
            continue
        words = s[1:].split(None, 2)
        if not words:
            continue
        d = words[0]
        if d in ("ifdef", "ifndef"):
            if len(words) != 2:
                raise HeaderError(f"line {n}: cannot parse {s!r}")
            active.append((words[1] in defined) == (d == "ifdef"))
        elif d == "else":
            if not active:
                raise HeaderError(f"line {n}: #else without #if")
            active[-1] = not active[-1]
        elif d == "endif":
            if not active:
                raise HeaderError(f"line {n}: #endif without #if")
            active.pop()
        elif not on:
            continue
        elif d == "define":
            if len(words) < 2:
                raise HeaderError(f"line {n}: cannot parse {s!r}")
            name = words[1]
            if "(" in name:
                raise HeaderError(f"line {n}: function-like macro {name!r} has no ctypes equivalent")
            defined.add(name)
            value = words[2].strip() if len(words) > 2 else ""
            if name.startswith("TRIB_"):
                m = _INT.match(value)
                if not m:
                    raise HeaderError(f"line {n}: #define {name} {value!r} is not an integer constant")
                constants.append((name, int(m.group(1), 0)))
        elif d == "include":
            target = s[1:].split(None, 1)[1].strip() if len(words) > 1 else ""
            if target not in STANDARD_INCLUDES:
                raise HeaderError(f"line {n}: #include {target} is not one of {sorted(STANDARD_INCLUDES)}")
        else:
            raise HeaderError(f"line {n}: unsupported preprocessor directive {s!r}")
    if active:
        raise HeaderError("unterminated #if at the end of the header")
    return "\n".join(code), constants


def _statements(code: str) -> List[str]:
    """Top-level declarations: split at ``;`` outside braces."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(code):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise HeaderError(f"unbalanced '}}' near {code[max(0, i - 60):i + 1]!r}")
        elif ch == ";" and depth == 0:
            out.append(" ".join(code[start:i].split()))
            start = i + 1
    rest = " ".join(code[start:].split())
    if rest or depth:
        raise HeaderError(f"unterminated declaration at the end of the header: {rest[:80]!r}")
    return [s for s in out if s]


_TOKEN = re.compile(r"[A-Za-z_]\w*|\*|\[[^\]]*\]|\S")


def _parse_type(text: str, named: bool, where: str) -> Decl:
    """``const struct trib_x *name`` -> Decl(name, CType). ``named``: the declaration
    ends with a name (a field or a parameter), else it is a bare type (a return type)."""
    tokens = _TOKEN.findall(text)
    array = None
    if tokens and tokens[-1].startswith("["):
        array = tokens.pop()[1:-1].strip()
        if not array:
            raise HeaderError(f"{where}: an array without a size: {text!r}")
    name = ""
    if named:
        if not tokens or not re.fullmatch(r"[A-Za-z_]\w*", tokens[-1]) or tokens[-1] in ("const", "struct"):
            raise HeaderError(f"{where}: no name in {text!r}")
        name = tokens.pop()
    base, is_struct, base_const, pointers = "", False, False, 0
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t == "const":
            if not base:
                base_const = True
            # `T *const` (a const pointer) is the same for ctypes
        elif t == "struct":
            if base or i + 1 >= len(tokens):
                raise HeaderError(f"{where}: cannot parse {text!r}")
            i += 1
            base, is_struct = tokens[i], True
        elif t == "*":
            if not base:
                raise HeaderError(f"{where}: '*' before a type in {text!r}")
            pointers += 1
        elif re.fullmatch(r"[A-Za-z_]\w*", t) and not base:
            base = t
        else:
            raise HeaderError(f"{where}: cannot parse {text!r} (at {t!r})")
        i += 1
    if not base:
        raise HeaderError(f"{where}: no type in {text!r}")
    return Decl(name, CType(base, is_struct, pointers, base_const, array))


_OPAQUE = re.compile(r"^typedef struct (\w+) (\w+)$")
_STRUCT = re.compile(r"^typedef struct (\w+) \{(.*)\} (\w+)$", re.S)
_FUNCTION = re.compile(r"^(.*?)\b(trib_\w+) ?\((.*)\)$", re.S)
_CALLBACK = re.compile(r"^typedef (.*?)\(\*(trib_\w+_fn)\) ?\((.*)\)$", re.S)


def _params(name: str, params_text: str) -> Tuple[Decl, ...]:
    params_text = params_text.strip()
    if params_text == "void":
        return ()
    if not params_text:
        raise HeaderError(f"{name}() declares no prototype: write {name}(void)")
    return tuple(_parse_type(p, True, f"a parameter of {name}") for p in params_text.split(","))


def parse(text: str) -> Header:
    """Parse the header's text; raises HeaderError on anything unexpected."""
    code, constants = _preprocess(_strip_comments(text))
    opaque: List[str] = []
    structs: List[Struct] = []
    functions: List[Function] = []
    callbacks: List[Function] = []
    for st in _statements(code):
        m = _CALLBACK.match(st)
        if m:
            name = m.group(2)
            restype = _parse_type(m.group(1), False, f"the return type of {name}").type
            callbacks.append(Function(name, restype, _params(name, m.group(3))))
            continue
        m = _OPAQUE.match(st)
        if m:
            if m.group(1) != m.group(2):
                raise HeaderError(f"typedef of struct {m.group(1)} under another name: {st!r}")
            opaque.append(m.group(1))
            continue
        m = _STRUCT.match(st)
        if m:
            name = m.group(1)
            if m.group(3) != name:
                raise HeaderError(f"typedef of struct {name} under another name: {m.group(3)!r}")
            body = [f.strip() for f in m.group(2).split(";")]
            if body[-1]:
                raise HeaderError(f"struct {name}: a field without ';': {body[-1]!r}")
            fields = tuple(_parse_type(f, True, f"struct {name}") for f in body[:-1])
            if not fields:
                raise HeaderError(f"struct {name} has no fields")
            structs.append(Struct(name, fields))
            continue
        m = _FUNCTION.match(st)
        if m and "typedef" not in m.group(1):
            name = m.group(2)
            restype = _parse_type(m.group(1), False, f"the return type of {name}").type
            functions.append(Function(name, restype, _params(name, m.group(3))))
            continue
        raise HeaderError(f"unrecognised declaration: {st[:200]!r}")
    names = [n for n, _ in constants] + opaque + [s.name for s in structs] + [f.name for f in functions]
    names += [c.name for c in callbacks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HeaderError(f"declared more than once: {', '.join(dup)}")
    return Header(tuple(constants), tuple(opaque), tuple(structs), tuple(functions), tuple(callbacks))


# ---- C types -> ctypes ----------------------------------------------------------------------


def _pointer(expr: str, times: int) -> str:
    for _ in range(times):
        expr = f"POINTER({expr})"
    return expr


def ctype_expr(
    t: CType,
    where: str,
    opaque: Sequence[str],
    defined: Sequence[str],
    constants: Sequence[str],
    callbacks: Sequence[str] = (),
) -> str:
    """The ctypes expression for a C type (see the module docstring for the rules).
    ``defined``: structs generated so far (a struct by value must come earlier);
    ``callbacks``: the function-pointer typedefs generated so far."""
    if t.base in callbacks and not t.is_struct and t.array is None:
        if t.pointers:
            raise HeaderError(f"{where}: a pointer to a callback type is not supported: {t.c()!r}")
        return t.base
    if t.is_struct and t.base not in opaque and t.base not in defined:
        raise HeaderError(f"{where}: struct {t.base} is not defined before it is used")
    if t.array is not None:
        if t.pointers or t.is_struct or t.base not in SCALARS:
            raise HeaderError(f"{where}: unsupported array type {t.c()!r}")
        if not (t.array.isdigit() or t.array in constants):
            raise HeaderError(f"{where}: array size {t.array!r} is neither a number nor a TRIB_* constant")
        return f"{SCALARS[t.base]} * {t.array}"
    if t.pointers == 0:
        if t.is_struct:
            if t.base in opaque:
                raise HeaderError(f"{where}: opaque struct {t.base} used by value")
            return t.base
        if t.base == "void":
            raise HeaderError(f"{where}: void is only a return type here")
        if t.base not in SCALARS:
            raise HeaderError(f"{where}: C type {t.c()!r} has no ctypes mapping in gen_ffi.py")
        return SCALARS[t.base]
    if t.is_struct:
        if t.base in opaque:
            return _pointer(f"{t.base}_p", t.pointers - 1)
        return _pointer(t.base, t.pointers)
    if t.base == "char":
        return _pointer("c_char_p", t.pointers - 1)
    if t.base == "uint8_t" and t.pointers == 1 and t.base_const:
        return "c_char_p"
    if t.base == "void":
        return _pointer("c_void_p", t.pointers - 1)
    if t.base not in SCALARS:
        raise HeaderError(f"{where}: C type {t.c()!r} has no ctypes mapping in gen_ffi.py")
    return _pointer(SCALARS[t.base], t.pointers)


# ---- rendering ------------------------------------------------------------------------------


def render(text: str) -> str:
    """The generated module for the header's text."""
    h = parse(text)
    consts = [n for n, _ in h.constants]
    opaque = list(h.opaque)
    used: Set[str] = set()
    defined: List[str] = []
    callbacks: List[str] = []

    def expr(t: CType, where: str) -> str:
        e = ctype_expr(t, where, opaque, defined, consts, callbacks)
        used.update(w for w in re.findall(r"\b(?:c_\w+|POINTER)\b", e))
        return e

    body: List[str] = []
    body += ["", "", "# ---- constants: every #define TRIB_* " + "-" * 52, ""]
    for name, value in h.constants:
        body.append(f"{name} = {value}")
    body += ["", "#: Every constant above, by name, in the header's order.", "CONSTANTS = {"]
    body += [f'    "{name}": {name},' for name in consts]
    body += ["}", "", "", "# ---- opaque handles: `struct trib_x *` is trib_x_p " + "-" * 38, ""]
    for name in opaque:
        body.append(f"{name}_p = c_void_p  # struct {name} *")
    if opaque:
        used.add("c_void_p")
    body += ["", "#: The opaque structs of the header (their handles are the aliases above).", "OPAQUE = ("]
    body += [f'    "{name}",' for name in opaque]
    body += [")", "", "", "# ---- structures: field for field " + "-" * 56]
    for s in h.structs:
        body += ["", "", f"class {s.name}(Structure):", f'    """``struct {s.name}``."""', "", "    _fields_ = ["]
        for f in s.fields:
            where = f"field {f.name} of struct {s.name}"
            body.append(f'        ("{f.name}", {expr(f.type, where)}),')
        body.append("    ]")
        defined.append(s.name)
    if h.structs:
        used.add("Structure")
    body += ["", "", "#: Every structure above, in the header's order.", "STRUCTS = ("]
    body += [f"    {s.name}," for s in h.structs]
    body += [")"]
    if h.callbacks:
        body += ["", "", "# ---- callbacks: function-pointer typedefs " + "-" * 47, ""]
        for c in h.callbacks:
            res = "None" if (c.restype.base == "void" and not c.restype.pointers and not c.restype.is_struct) else expr(
                c.restype, f"the return type of {c.name}"
            )
            args = [expr(p.type, f"parameter {p.name} of {c.name}") for p in c.params]
            body.append(f"# {c.restype.c()} (*{c.name})({', '.join(p.name for p in c.params) or 'void'})")
            body.append(f"{c.name} = CFUNCTYPE({', '.join([res] + args)})")
            callbacks.append(c.name)
        used.add("CFUNCTYPE")
    body += ["", "", "# ---- functions: name -> (restype, argtypes) " + "-" * 45, "", "FUNCTIONS = {"]
    for f in h.functions:
        res = "None" if (f.restype.base == "void" and not f.restype.pointers and not f.restype.is_struct) else expr(
            f.restype, f"the return type of {f.name}"
        )
        args = [expr(p.type, f"parameter {p.name} of {f.name}") for p in f.params]
        ret = f.restype.c()
        sig = ", ".join(p.name for p in f.params) or "void"
        body.append(f"    # {ret}{'' if ret.endswith('*') else ' '}{f.name}({sig})")
        argtuple = "(" + ", ".join(args) + ("," if len(args) == 1 else "") + ")"
        body.append(f'    "{f.name}": ({res}, {argtuple}),')
    body += ["}", ""]

    exported = consts + ["CONSTANTS"] + [f"{n}_p" for n in opaque] + ["OPAQUE"]
    exported += [s.name for s in h.structs] + ["STRUCTS"] + [c.name for c in h.callbacks] + ["FUNCTIONS"]
    order = ["CFUNCTYPE", "POINTER", "Structure"] + sorted(u for u in used if u.startswith("c_"))
    imports = [u for u in order if u in used]
    head = [
        '"""ctypes declarations of the C ABI: every ``TRIB_*`` constant, opaque handle,',
        "structure, callback type and function prototype of include/tributary.h.",
        "",
        "Generated by bindings/python/gen_ffi.py from include/tributary.h; do not edit.",
        f"Regenerate with ``{REGENERATE}`` (from the repository root);",
        "bindings/python/tests/test_ffi_gen.py fails while this file is out of date.",
        "``_ffi.py`` applies FUNCTIONS to the loaded library.",
        '"""',
        "",
        "from ctypes import (",
        *[f"    {name}," for name in imports],
        ")",
        "",
        "__all__ = [",
    ]
    head += [f'    "{n}",' for n in exported]
    head.append("]")
    return "\n".join(head + body)


def main(argv: Sequence[str]) -> int:
    check = "--check" in argv
    unknown = [a for a in argv if a != "--check"]
    if unknown:
        print(f"usage: {REGENERATE} [--check]", file=sys.stderr)
        return 2
    try:
        text = render(HEADER.read_text(encoding="utf-8"))
    except HeaderError as e:
        print(f"gen_ffi.py: {HEADER}: {e}", file=sys.stderr)
        return 1
    rel = OUTPUT.relative_to(REPO)
    if check:
        if not OUTPUT.is_file() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{rel} is out of date with include/tributary.h: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{rel} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
