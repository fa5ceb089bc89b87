"""Private helpers shared by the modules of the API (``_journal``, ``_compactor``,
``_reader``): the argument types (``PathLike``, ``Seconds``), the
:class:`InvalidArgumentError` of a bad argument, and the checks that turn seconds and
counts into what the C ABI takes."""

from __future__ import annotations

import datetime
import os
from typing import Any, Optional, Union

from .errors import InvalidArgumentError

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: A duration: seconds (int or float) or a ``datetime.timedelta``.
Seconds = Union[int, float, datetime.timedelta]


def _arg_error(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message, code=InvalidArgumentError.code)


# The C ABI's integers are 64-bit unsigned: ctypes would wrap a larger int silently
# (2**64 + 5 became 5), so every int crossing it is checked against this first.
U64_MAX = 2**64 - 1


def _ms(value: Optional[Seconds], what: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or a timedelta, not {type(value).__name__}")
    if value < 0 or value != value:
        raise _arg_error(f"`{what}` must be a non-negative number of seconds, not {value}")
    if value * 1000 > U64_MAX:
        raise _arg_error(f"`{what}` must be at most {U64_MAX // 1000} seconds, not {value}")
    return int(round(value * 1000))


def _u64(value: Any, what: str, least: int = 0) -> int:
    """`value` as an int the C ABI's 64-bit unsigned fields take: a TypeError for a
    non-int (or a bool), an InvalidArgumentError below `least` or above 2**64 - 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < least:
        raise _arg_error(f"`{what}` must be at least {least}, not {value}")
    if value > U64_MAX:
        raise _arg_error(f"`{what}` must be at most {U64_MAX} (2**64 - 1), not {value}")
    return value


def _positive_int(value: Any, what: str) -> int:
    return _u64(value, what, least=1)


def _not_one_item(value: Any, what: str) -> None:
    """A str, bytes or path where a collection of them is expected: iterating it
    would take each character as an item (`append_many("hello")` stored 5 lines)."""
    if isinstance(value, (str, bytes, bytearray, os.PathLike)):
        raise TypeError(f"{what} must be a collection (a list, a tuple, ...), not one {type(value).__name__}")
