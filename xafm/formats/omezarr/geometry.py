"""Chunk and shard geometry: default chunks, ``chunks=``/``shards=`` as (t, y, x), the
chunks and shape of each pyramid level, and blocks whose edges fall on write units."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...core import conventions
from ...exceptions import FormatError

#: Target bytes of one chunk when ``chunks`` is not given, and the largest y/x chunk edge.
CHUNK_BYTES = 4 * 2**20
MAX_EDGE = 1024


def is_int(k: Any) -> bool:
    return isinstance(k, (int, np.integer))


def as_triple(value: Any, what: str, shape: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """``chunks``/``shards`` as (t, y, x): an int (frames, whole frames), a 3-tuple or a dict."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        alias = {"t": "time", "time": "time", "y": "y", "x": "x"}
        unknown = [k for k in value if k not in alias]
        if unknown:
            raise FormatError(f"{what} keys must be among 'time', 'y', 'x'; got {unknown}")
        got = {alias[k]: v for k, v in value.items()}
        value = tuple(got.get(d, None) for d in conventions.DIMS)
        value = tuple(shape[i] if v is None else v for i, v in enumerate(value))
    elif is_int(value):
        value = (int(value), shape[1], shape[2])
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise FormatError(f"{what} must be an int, a (time, y, x) tuple or a dict, got {value!r}") from None
    if len(out) != 3 or any(v < 1 for v in out):
        raise FormatError(f"{what} must be three positive ints (time, y, x), got {value!r}")
    return out[0], out[1], out[2]


def default_chunks(shape: tuple[int, int, int], dtype: Any) -> tuple[int, int, int]:
    """Whole frames up to ``MAX_EDGE`` pixels a side, as many frames as fit in ``CHUNK_BYTES``."""
    n, ny, nx = shape
    cy, cx = min(ny, MAX_EDGE), min(nx, MAX_EDGE)
    ct = max(1, CHUNK_BYTES // (cy * cx * np.dtype(dtype).itemsize))
    return (max(1, min(n, ct)), cy, cx)


def level_geometry(chunks: tuple, shards: tuple | None, shape_k: tuple) -> tuple[tuple, tuple | None]:
    """Chunk and shard shape of one pyramid level (capped to the level, shards kept multiples)."""
    ck = (chunks[0],) + tuple(max(1, min(c, s)) for c, s in zip(chunks[1:], shape_k[1:]))
    if shards is None:
        return ck, None
    sk = (shards[0],) + tuple(
        min(sh, -(-s // c) * c) for sh, c, s in zip(shards[1:], ck[1:], shape_k[1:])
    )
    return ck, sk


def aligned(n: int, unit: int, start: int = 0) -> tuple[int, ...]:
    """Block sizes covering ``[start, start+n)`` whose edges fall on multiples of ``unit``."""
    edges = [start] + list(range((start // unit + 1) * unit, start + n, unit)) + [start + n]
    return tuple(b - a for a, b in itertools.pairwise(edges) if b > a)


def level_shape(shape: tuple[int, int, int], k: int) -> tuple[int, int, int]:
    """The shape of pyramid level ``k``: time kept, y and x halved ``k`` times (floor)."""
    return (shape[0], shape[1] >> k, shape[2] >> k)
