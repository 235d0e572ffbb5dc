"""What the HDF5 and NPZ bundles share: the playNano bundle content, both ways.

Both bundles hold the same members (``data``, processed layers, masks, ``timestamps``,
``frame_metadata_json``, ``provenance_json``, ``state_backups_json``, ``pixel_size_nm``,
``channel``) plus ``xafm_attrs_json`` with what playNano has no place for (units,
non-square pixels, the ``(y, x)`` origin of a crop, extra attrs). See docs/formats.md.
"""

from __future__ import annotations

import gc
import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.conventions import json_text
from ..core.writable import check_writable
from ..exceptions import CorruptFileError, StackError, XafmWarning
from ._channels import pick_channel

STATE_BACKUPS_ATTR = "state_backups_json"
FRAME_PIXEL_SIZE_KEY = "frame_pixel_size_nm"


@dataclass
class BundleContent:
    data: xr.DataArray
    layers: dict[str, xr.DataArray]  # encoded name -> values
    masks: dict[str, xr.DataArray]
    times: np.ndarray
    frame_metadata_json: str
    provenance_json: str
    state_backups_json: str | None
    pixel_size_nm: float
    pixel_size_y_nm: float
    origin_nm: tuple[float, float]  # (y, x) of the first pixel
    channel: str
    units: str
    attrs_json: str


def written_parts(da: xr.DataArray, raw: bool) -> tuple[xr.DataArray, dict[str, xr.DataArray], dict[str, xr.DataArray]]:
    """The values, layers and masks a writer stores: with ``raw=True`` the kept layer
    'raw' alone (no layers, no masks)."""
    layers, masks = model.layers(da), model.masks(da)
    if not raw:
        return da, layers, masks
    if "raw" not in layers:
        raise StackError(
            "raw=True writes the layer 'raw', but this stack has none "
            f"(layers: {sorted(layers) or 'none'}); run a step with keep_layer=True first"
        )
    return layers["raw"], {}, {}


def bundle_content(da: xr.DataArray, *, raw: bool, fmt: str, path: os.PathLike[str] | str) -> BundleContent:
    """Everything a bundle writer writes, with the export record already in the provenance
    (in the file's, never in ``da``'s)."""
    da = check_writable(da, f"to_{fmt}", path)
    dy, dx = model.pixel_size_nm(da)
    y0, x0 = model.origin_nm(da)
    data, layers, masks = written_parts(da, raw)
    fm = model.frame_metadata(da)
    for entry in fm:
        entry.setdefault(FRAME_PIXEL_SIZE_KEY, dx)
    record = provenance.make_record("export", format=fmt, path=os.fspath(path), raw=bool(raw))
    recs = provenance.records(da) + [record]
    extra = model.user_attrs(da)
    state_backups = extra.pop(STATE_BACKUPS_ATTR, None)
    attrs_json = json_text({"units": da.attrs.get("units", ""), "pixel_size_y_nm": dy, conventions.ORIGIN_KEY: [y0, x0], "attrs": extra})
    return BundleContent(
        data=data,
        layers={conventions.encode_name(k): v for k, v in layers.items()},
        masks={conventions.encode_name(k): v for k, v in masks.items()},
        times=model.times_s(da),
        frame_metadata_json=json_text(fm),
        provenance_json=json.dumps(provenance.to_playnano(da, recs), ensure_ascii=False),
        state_backups_json=str(state_backups) if state_backups else None,
        pixel_size_nm=dx,
        pixel_size_y_nm=dy,
        origin_nm=(y0, x0),
        channel=model.channel_of(da),
        units=str(da.attrs.get("units", "")),
        attrs_json=attrs_json,
    )


def text(value: Any) -> str | None:
    """A string member or attr as text (bytes decoded, 1-element arrays unwrapped)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _json(path: str, what: str, text: str | None, default: Any) -> Any:
    if text is None:
        return default
    # a list of a dict per frame is many new objects, none in a cycle: the cyclic garbage
    # collector, which they would set off again and again over the whole heap, waits
    paused = gc.isenabled() and len(text) > 2**16
    if paused:
        gc.disable()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CorruptFileError(path, f"{what} is not valid JSON: {exc}") from None
    finally:
        if paused:
            gc.enable()


def _all_close(values: list[Any], px: float) -> bool:
    """Whether every frame's pixel size is a number within 1e-6 of ``px`` (relative)."""
    if not set(map(type, values)) <= {int, float, bool}:
        return all(isinstance(v, (int, float)) and math.isclose(v, px, rel_tol=1e-6) for v in values)
    a = np.array(values, dtype=np.float64)
    return bool(np.all(np.abs(a - px) <= 1e-6 * np.maximum(np.abs(a), abs(px))))


def assemble_bundle(
    path: str,
    fmt: str,
    *,
    channel_asked: str | None,
    data: Any,
    layers: dict[str, Any],
    masks: dict[str, Any],
    timestamps: Any,
    frame_metadata_json: Any,
    provenance_json: Any,
    state_backups_json: Any,
    pixel_size_nm: Any,
    channel: Any,
    attrs_json: Any,
    reader: str,
) -> xr.Dataset:
    """The stack behind a bundle; ``data``, ``layers`` and ``masks`` may be lazy arrays.

    ``channel_asked`` is the reader's ``channel=`` option: a bundle holds one channel, and
    asking for another is a ``ChannelError``.
    """
    shape = tuple(data.shape)
    if len(shape) != 3:
        raise CorruptFileError(path, f"'data' must be 3-D (time, y, x), found shape {shape}")
    n = shape[0]
    fm = _json(path, "frame_metadata_json", text(frame_metadata_json), [])
    if isinstance(fm, dict):
        fm = [fm]
    if not isinstance(fm, list) or not (set(map(type, fm)) <= {dict} or all(isinstance(x, dict) for x in fm)):
        raise CorruptFileError(path, "frame_metadata_json must be a JSON list of objects, one per frame")
    if len(fm) not in (0, n):
        warnings.warn(f"{path}: frame_metadata_json has {len(fm)} entries for {n} frames; ignored", XafmWarning, stacklevel=2)
        fm = []
    # one column per key (a frame without the key: None), never a dict per frame
    columns: dict[str, Any] = model.frame_columns(fm, n) if fm else {}
    recs, acquisition = provenance.from_playnano(_json(path, "provenance_json", text(provenance_json), {}))
    extra = _json(path, "xafm_attrs_json", text(attrs_json), {})
    extra = extra if isinstance(extra, dict) else {}
    try:
        px = float(np.asarray(pixel_size_nm).item())
    except (TypeError, ValueError):
        raise CorruptFileError(path, f"pixel_size_nm is not a number: {pixel_size_nm!r}") from None
    if not (math.isfinite(px) and px > 0):
        raise CorruptFileError(path, f"pixel_size_nm must be positive and finite, found {px}")
    py = extra.get("pixel_size_y_nm", px)
    py = float(py) if isinstance(py, (int, float)) and py > 0 else px
    try:  # absent in playNano's files and xafm's before crops kept their place: 0
        origin = model.check_origin(extra.get(conventions.ORIGIN_KEY))
    except StackError as exc:
        raise CorruptFileError(path, f"xafm_attrs_json: {exc}") from None
    if timestamps is None:
        timestamps = columns.get("timestamp", [None] * n) if fm else None
    times, recorded = (model.check_times(np.arange(n, dtype=float), n), None) if timestamps is None else model.times_or_index(path, timestamps, n)
    if FRAME_PIXEL_SIZE_KEY in columns and _all_close(columns[FRAME_PIXEL_SIZE_KEY], px):
        del columns[FRAME_PIXEL_SIZE_KEY]
    if recorded is not None:
        columns["timestamp_recorded"] = recorded.astype(np.float64)
    columns.pop("timestamp", None)

    attrs: dict[str, Any] = conventions.attrs_from_json(extra.get("attrs"))
    if acquisition and attrs_json is None:  # playNano's file: its acquisition metadata (xafm's keeps its own attrs)
        attrs.setdefault(conventions.ACQUISITION_ATTR, json_text(acquisition))
    sb = text(state_backups_json)
    if sb and sb.strip() not in ("{}", "null"):
        attrs[STATE_BACKUPS_ATTR] = sb

    def same_shape(kind: str, items: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, arr in items.items():
            if tuple(arr.shape) != shape:
                warnings.warn(
                    f"{path}: {kind} {name!r} has shape {tuple(arr.shape)}, data has {shape}; not attached",
                    XafmWarning,
                    stacklevel=3,
                )
                continue
            out[conventions.decode_name(name)] = arr
        return out

    recs.append(provenance.make_record("read", path=path, format=fmt, reader=reader))
    units = extra.get("units")
    name = conventions.safe_channel(text(channel) or "height")
    if channel_asked is not None:
        pick_channel(path, {name: name}, channel_asked)
    return model.assemble(
        data,
        pixel_size_nm=(py, px),
        origin_nm=origin,
        times=times,
        channel=name,
        units=str(units) if isinstance(units, str) else "nm",
        frame_metadata=columns or None,
        masks=same_shape("mask", masks),
        layers=same_shape("layer", layers),
        attrs=attrs,
        provenance=recs,
    )
