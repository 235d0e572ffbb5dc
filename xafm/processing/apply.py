"""How a processing step runs: frame by frame (lazily on dask stacks), recorded in the
provenance, with its input optionally kept as a layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.blocks import is_dask
from ..exceptions import StackError


def _step_index(recs: list[dict]) -> int:
    return len(provenance.step_records(recs)) + 1


def current_layer_name(recs: list[dict]) -> str:
    """What the stack's values are, in playNano's layer names: ``raw`` or ``step_<i>_<name>``."""
    for rec in reversed(recs):
        if rec.get("type") == "step":
            return str(rec.get("output_key") or f"step_{rec.get('index')}_{rec.get('name')}")
    return "raw"


def _out_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)


def _per_frame(func: Callable, params: dict, out_dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    def run(block: np.ndarray) -> np.ndarray:
        out = np.empty(block.shape, dtype=out_dtype)
        for i in range(block.shape[0]):
            res = np.asarray(func(block[i], **params))
            if res.shape != block.shape[1:]:
                raise StackError(f"{getattr(func, '__name__', func)} returned shape {res.shape} for a frame of {block.shape[1:]}")
            out[i] = res
        return out

    return run


def apply(
    da: xr.DataArray,
    func: Callable[..., Any],
    *,
    name: str | None = None,
    keep_layer: bool = False,
    per_frame: bool = True,
    **params: Any,
) -> xr.DataArray:
    """Apply ``func`` to every frame (``per_frame=True``: ``func(frame2d, **params)``) or to
    the whole stack (``func(array3d, **params)``, given the dask array for dask stacks),
    and record the step. dask stacks stay lazy. ``keep_layer=True`` keeps the input as a
    layer named after what it is (``raw`` for the first)."""
    model.check_stack(da, "apply")
    if not callable(func):
        raise StackError(f"apply needs a function, got {func!r}")
    name = name or getattr(func, "__name__", "step")
    data = da.data
    out_dtype = _out_dtype(data.dtype)
    if per_frame:
        run = _per_frame(func, params, out_dtype)
        if is_dask(data):
            data = data.rechunk({1: -1, 2: -1})
            out = data.map_blocks(run, dtype=out_dtype, meta=np.empty((0, 0, 0), out_dtype))
        else:
            out = run(np.asarray(data))
    else:
        out = func(data, **params)
        if tuple(out.shape) != tuple(da.shape):
            raise StackError(f"{name} returned shape {tuple(out.shape)}, the stack has {tuple(da.shape)}")
    recs = provenance.records(da)
    index = _step_index(recs)
    new = model.replace_data(da, out)
    kept = None
    if keep_layer:
        kept = current_layer_name(recs)
        if kept in model.layers(da):
            kept = f"step_{index}_{name}_input"
        new = new.assign_coords({conventions.layer_coord(kept): da.variable.copy(deep=False)})
        new.coords[conventions.layer_coord(kept)].attrs = {}
    record = provenance.make_record(
        "step",
        index=index,
        name=name,
        params=params,
        function=getattr(func, "__qualname__", repr(func)),
        module=getattr(func, "__module__", None) or type(func).__module__,
        per_frame=int(bool(per_frame)),
        output_key=f"step_{index}_{name}",
        **({"kept_layer": kept} if kept else {}),
    )
    return provenance.append(new, record)
