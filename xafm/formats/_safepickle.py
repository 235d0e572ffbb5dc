"""Pickled numpy string arrays (playNano's ``.npz`` text members), read without running
anything and without building more than the payload can pay for.

A pickle is a program; xafm reads the one program numpy writes for an object array of
strings and nothing else:

- the opcodes are checked first: only those numpy's pickles use (protocols 2 to 4), no
  number above ``MAX_NUMBER``, memo indices in order (a pickle that writes its memo at
  index 2**24 makes the unpickler allocate a 2**25-slot memo);
- the only globals are stand-ins: ``numpy.ndarray`` is a token, ``numpy.dtype`` accepts only
  the object dtype, ``_reconstruct`` only numpy's ``(ndarray, (0,), b'b')`` and returns a
  placeholder. No numpy array is built while unpickling;
- the placeholder's ``__setstate__`` receives the claimed shape and the list of elements:
  the element count must equal the shape's product (so a claimed ``(2**24, 64)`` with a
  short list is refused before anything of that size exists), stay within
  ``MAX_ELEMENTS`` and within the payload's length (each element costs a byte of pickle at
  least), every element must be a ``str`` or ``bytes``, and their total length, counted
  once per reference (a memo lets one string be referenced many times for two bytes each),
  within ``max_chars``. Only then is the array built.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from typing import Any

import numpy as np

from ..exceptions import CorruptFileError, UnsafeFileError

#: Largest number a string array's pickle needs (shapes, dtype flags, memo indices).
MAX_NUMBER = 2**24
#: Most elements of a pickled string array (playNano's are 0-d: one element).
MAX_ELEMENTS = 2**16
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_ALLOWED_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
    "MEMOIZE", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "APPEND", "APPENDS",
    "NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
}


class _Refused(Exception):
    """Raised inside the unpickler; becomes an UnsafeFileError naming the member."""


class _NdarrayToken:
    """Stands for ``numpy.ndarray``: only ever the first argument of ``_reconstruct``."""

    def __call__(self, *args: Any) -> Any:
        raise _Refused("the pickle calls numpy.ndarray directly")


class _ObjectDtype:
    """Stands for ``numpy.dtype('O')``; its pickled state is ignored."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) > 16:
            raise _Refused("the pickle gives the object dtype an unexpected state")


def _dtype(name: Any, align: Any = False, copy: Any = True) -> _ObjectDtype:
    if name not in ("O8", "O4", "O"):
        raise _Refused(f"the pickle builds dtype {name!r}, not the object dtype of a string array")
    return _ObjectDtype()


class _PendingArray:
    """What ``_reconstruct`` returns: becomes a string array once its state has been checked."""

    def __init__(self, limits: _Limits):
        self.limits = limits
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise _Refused("the pickle sets an array's state twice")
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise _Refused("the pickle gives the array an unexpected state")
        shape, dtype, fortran, items = state
        if not (isinstance(shape, tuple) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise _Refused(f"the pickle claims shape {shape!r}")
        if not isinstance(dtype, _ObjectDtype) or not isinstance(items, list):
            raise _Refused("the pickle holds an array that is not an object array of strings")
        count = math.prod(shape)
        self.limits.check(shape, count, items)
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        self.array = arr.reshape(shape, order="F" if fortran else "C")


class _Limits:
    def __init__(self, payload_len: int, max_chars: int):
        self.payload_len, self.max_chars = payload_len, max_chars
        self.pending = 0

    def check(self, shape: tuple[int, ...], count: int, items: list) -> None:
        if count != len(items):
            raise _Refused(f"the pickle claims shape {shape} ({count} elements) but holds {len(items)}")
        if count > MAX_ELEMENTS or count > self.payload_len:
            raise _Refused(f"the pickle claims {count} elements, more than its {self.payload_len} bytes can hold (at most {MAX_ELEMENTS})")
        total = 0
        for item in items:
            if not isinstance(item, (str, bytes)):
                raise _Refused(f"the pickle holds a {type(item).__name__}, not a string")
            total += len(item)
            if total > self.max_chars:
                raise _Refused(f"the pickle's strings add up to more than {self.max_chars} characters (counting each reference)")


class _StringsOnlyUnpickler(pickle.Unpickler):
    """Admits numpy's object-array reconstruction and nothing else: no code can run."""

    def __init__(self, fp: Any, limits: _Limits):
        super().__init__(fp, encoding="latin1")
        self.limits = limits
        self.token = _NdarrayToken()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _Refused(f"refusing to unpickle {module}.{name}: only plain strings are accepted")
        if name == "ndarray":
            return self.token
        if name == "dtype":
            return _dtype
        return self._reconstruct

    def _reconstruct(self, cls: Any, shape: Any, typecode: Any) -> _PendingArray:
        if cls is not self.token or shape != (0,) or typecode not in (b"b", "b"):
            raise _Refused("the pickle reconstructs an array in a way numpy does not")
        self.limits.pending += 1
        if self.limits.pending > 1:
            raise _Refused("the pickle builds more than one array")
        return _PendingArray(self.limits)


def _check_opcodes(payload: bytes) -> None:
    memo = 0
    for op, arg, _ in pickletools.genops(payload):
        if op.name not in _ALLOWED_OPCODES:
            raise _Refused(f"opcode {op.name} refused")
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_NUMBER:
            raise _Refused(f"implausible number {arg} refused")
        if op.name in ("BINPUT", "LONG_BINPUT") and isinstance(arg, int):
            if arg > memo:
                raise _Refused(f"memo index {arg} out of order (next is {memo}) refused")
            memo = max(memo, arg + 1)
        elif op.name == "MEMOIZE":
            memo += 1


def load_string_array(payload: bytes, path: str, key: str, max_chars: int) -> np.ndarray:
    """The string array pickled in ``payload`` (member ``key`` of ``path``).

    Raises ``UnsafeFileError`` for anything but numpy's pickle of an object array of
    strings within the bounds above, ``CorruptFileError`` for a damaged pickle.
    """
    limits = _Limits(len(payload), max_chars)
    try:
        _check_opcodes(payload)
        obj = _StringsOnlyUnpickler(io.BytesIO(payload), limits).load()
    except _Refused as exc:
        raise UnsafeFileError(path, f"member {key!r} holds a pickle xafm refuses: {exc}") from None
    except Exception as exc:
        raise CorruptFileError(path, f"member {key!r} is not a readable string array: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, _PendingArray) or obj.array is None:
        raise UnsafeFileError(path, f"member {key!r} holds a pickle of something other than a string array; refused")
    return obj.array
