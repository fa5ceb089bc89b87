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


def _ms(value: Optional[Seconds], what: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or a timedelta, not {type(value).__name__}")
    if value < 0 or value != value:
        raise _arg_error(f"`{what}` must be a non-negative number of seconds, not {value}")
    return int(round(value * 1000))


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 1:
        raise _arg_error(f"`{what}` must be at least 1, not {value}")
    return value
