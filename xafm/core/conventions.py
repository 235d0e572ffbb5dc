"""The conventions every layer of xafm shares: dim names, the attrs and coordinate names
xafm owns, how names are encoded, and which values netCDF and JSON can hold.

This is the bottom of the package: it imports nothing from xafm but the exceptions, so
the data model, provenance, the format wing and rendering can all rely on it.
"""

from __future__ import annotations

import json
import math
import os
import string
import unicodedata
import urllib.parse
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

from ..exceptions import StackError

TIME, Y, X = "time", "y", "x"
DIMS = (TIME, Y, X)

#: Coordinate name prefixes for masks and kept processed layers (name is percent-encoded).
MASK_PREFIX = "mask__"
LAYER_PREFIX = "layer__"
#: Prefix for per-frame metadata keys that are not usable as coordinate names as they are.
META_PREFIX = "meta__"

#: attrs keys xafm owns.
PROVENANCE_ATTR = "xafm_provenance"
ACQUISITION_ATTR = "acquisition_json"
PIXEL_SIZE_ATTR = "pixel_size_nm"
PIXEL_SIZE_Y_ATTR = "pixel_size_y_nm"
#: Key under which files keep the ``(y, x)`` coordinate of the first pixel (nm), where a
#: format has no coordinates of its own (bundles' ``xafm_attrs_json``, xafm's Zarr metadata).
ORIGIN_KEY = "origin_nm"
#: Coordinate attrs that let per-frame metadata map back to the original keys and types.
META_KEY_ATTR = "frame_metadata_key"
META_ENCODING_ATTR = "xafm_encoding"
#: attrs xafm manages itself on a stack (everything else is the user's and travels along).
OWN_ATTRS = frozenset({"units", "channel", "long_name", PIXEL_SIZE_ATTR, PIXEL_SIZE_Y_ATTR, PROVENANCE_ATTR})

#: Variable name of an array that keeps several channels as a ``channel`` dim.
MULTI_CHANNEL_NAME = "intensity"

_SAFE_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


# --------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------
def encode_name(name: str, what: str = "name") -> str:
    """Percent-encode a mask/layer name so it is safe as an HDF5 path, NPZ key or file name.

    Only ASCII letters, digits, ``-`` and ``_`` are kept; everything else (``/``, ``.``,
    spaces, non-ASCII) becomes ``%XX`` of its UTF-8 bytes, so ``decode_name`` inverts it
    exactly and no encoded name can be empty, ``.`` or ``..``.
    """
    if not isinstance(name, str) or name == "":
        raise StackError(f"{what} must be a non-empty string, got {name!r}")
    try:
        return "".join(c if c in _SAFE_CHARS else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in name)
    except UnicodeEncodeError as exc:
        raise StackError(f"{what} {name!r} is not valid unicode: {exc}") from None


def decode_name(encoded: str) -> str:
    return urllib.parse.unquote(encoded, errors="replace")


def check_netcdf_name(name: Any, what: str) -> str:
    """Return ``name`` (NFC-normalised) if netCDF accepts it as a variable name, else raise.

    The rules are netCDF-C's: a letter, digit, ``_`` or non-ASCII character first; no
    ``/`` or control characters; no trailing white space.
    """
    if not isinstance(name, str) or not name:
        raise StackError(f"{what} must be a non-empty string, got {name!r}")
    text: str = unicodedata.normalize("NFC", name)
    first = text[0]
    if first.isascii() and not (first.isalnum() or first == "_"):
        raise StackError(f"{what} {text!r} must start with a letter, digit or '_'")
    for c in text:
        if c == "/" or (c.isascii() and not c.isprintable()) or unicodedata.category(c) in ("Cc", "Cs"):
            raise StackError(f"{what} {text!r} contains {c!r}, which netCDF does not allow")
    if text[-1].isspace():
        raise StackError(f"{what} {text!r} ends with white space, which netCDF does not allow")
    return text


def safe_channel(name: Any) -> str:
    """A channel name from a file, made into a valid netCDF name if it is not one."""
    try:
        return check_netcdf_name(name, "channel")
    except StackError:
        cleaned = "".join(c if (c.isalnum() or c in "-_. ") else "_" for c in str(name)).strip() or "channel"
        return cleaned if cleaned[0].isalnum() or cleaned[0] == "_" else "c" + cleaned


def mask_coord(name: str) -> str:
    return MASK_PREFIX + encode_name(name, "mask name")


def layer_coord(name: str) -> str:
    return LAYER_PREFIX + encode_name(name, "layer name")


# --------------------------------------------------------------------------------------
# netCDF-safe attrs
# --------------------------------------------------------------------------------------
def check_attr_value(key: str, value: Any) -> Any:
    """Raise unless ``value`` is netCDF-safe: str, int, float or a 1-D numeric array."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise StackError(f"attr {key!r}={value!r} is not netCDF-safe (bool/None); use an int or str")
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.dtype.kind in "iuf":
            return arr
    raise StackError(
        f"attr {key!r} has type {type(value).__name__}, which netCDF cannot store; store nested content as a JSON string"
    )


def check_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): check_attr_value(str(k), v) for k, v in attrs.items()}


def attrs_from_json(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """attrs as a file's JSON keeps them: lists back to numeric arrays, anything that is
    not netCDF-safe (nested content) kept as a JSON string."""
    out: dict[str, Any] = {}
    for k, v in (stored or {}).items():
        if isinstance(v, list):
            v = np.asarray(v)
        try:
            out[str(k)] = check_attr_value(str(k), v)
        except StackError:
            out[str(k)] = json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
    return out


# --------------------------------------------------------------------------------------
# JSON-safe values
# --------------------------------------------------------------------------------------
def jsonable(obj: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``obj``: numpy scalars and small arrays become plain values,
    paths and callables become strings, non-finite floats become ``"nan"``/``"inf"``."""
    if _depth > 50:
        return repr(obj)
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, np.generic):
        return jsonable(obj.item(), _depth + 1)
    if isinstance(obj, np.ndarray):
        if obj.size <= 1000:
            return jsonable(obj.tolist(), _depth + 1)
        return f"<array shape={obj.shape} dtype={obj.dtype}>"
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v, _depth + 1) for v in obj]
    if isinstance(obj, (PurePath, os.PathLike)):
        return os.fspath(obj)
    if callable(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return f"<{type(obj).__name__} shape={tuple(obj.shape)} dtype={obj.dtype}>"
    return repr(obj)


def json_text(obj: Any) -> str:
    """``obj`` as JSON text that keeps non-ASCII characters as they are."""
    return json.dumps(jsonable(obj), ensure_ascii=False)
