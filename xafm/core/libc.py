"""Linux system calls that Python's ``os`` module does not offer, reached through ctypes."""

from __future__ import annotations

import ctypes
import sys
from typing import Any


def linux_function(name: str, argtypes: list[Any], restype: Any = ctypes.c_int) -> Any:
    """libc's function ``name`` with its C signature, or None off Linux or where this
    libc lacks it (callers then fall back); errno is kept for ``ctypes.get_errno``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = restype
    return fn
