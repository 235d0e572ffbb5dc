"""Provenance: the list of records that says where a stack came from and what was done to it.

On a stack the list is a JSON string in ``attrs["xafm_provenance"]`` (netCDF-safe);
``da.afm.provenance`` parses it. Each record is a dict with at least ``type``
(``create``, ``read``, ``step``, ``mask``, ``export``), ``timestamp`` (UTC, ISO 8601) and
``xafm_version``. In the HDF5/NPZ bundles the list is wrapped in playNano's provenance
object (see :func:`to_playnano`), because playNano's loaders index it as a dict.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from .conventions import ACQUISITION_ATTR, PROVENANCE_ATTR, jsonable

#: One provenance record: a JSON object.
Record = dict[str, Any]

#: Marker of xafm's own content inside a playNano-shaped provenance object.
XAFM_KEY = "xafm"
FORMAT_VERSION = 1


def utcnow() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def make_record(type: str, **fields: Any) -> Record:
    rec: Record = {"type": type, "timestamp": utcnow(), "xafm_version": __version__}
    rec.update(jsonable(fields))
    return rec


def dumps(records: list[Record]) -> str:
    return json.dumps(jsonable(records), ensure_ascii=False)


def records(da: xr.DataArray) -> list[dict[str, Any]]:
    raw = da.attrs.get(PROVENANCE_ATTR)
    if not raw:
        return []
    try:
        out = json.loads(raw)
    except ValueError:
        return [{"type": "unparsed", "text": str(raw)}]
    return out if isinstance(out, list) else [out]


def with_records(da: xr.DataArray, recs: list[Record]) -> xr.DataArray:
    out = da.copy(deep=False)
    out.attrs = {**da.attrs, PROVENANCE_ATTR: dumps(recs)}
    return out


def append(da: xr.DataArray, record: dict[str, Any]) -> xr.DataArray:
    return with_records(da, records(da) + [record])


def step_records(recs: list[Record]) -> list[Record]:
    return [r for r in recs if r.get("type") in ("step", "mask")]


# --------------------------------------------------------------------------------------
# playNano's provenance object
# --------------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    """playNano's environment keys (``timestamp``, ``python_version``, ``platform``, ...)."""
    return {
        "timestamp": utcnow(),
        "python_version": sys.version.replace("\n", " "),
        "platform": f"{platform.system()}-{platform.release()}-{platform.machine()}",
        "xafm_version": __version__,
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
    }


def to_playnano(da: xr.DataArray, recs: list[Record]) -> dict[str, Any]:
    """Wrap xafm's records in the dict shape playNano's loaders expect.

    ``processing.steps`` lists the processing steps in playNano's terms (index, name,
    params, timestamp, version, function_module, step_type, processed_key/mask_key) and
    ``keys_by_name`` maps a step name to the layer/mask keys it produced; xafm's full list
    is under the ``xafm`` key so nothing is lost.
    """
    try:
        acq = json.loads(da.attrs.get(ACQUISITION_ATTR) or "{}")
    except ValueError:
        acq = {}
    steps: list[dict[str, Any]] = []
    keys_by_name: dict[str, list[str]] = {}
    for i, rec in enumerate(step_records(recs), start=1):
        if rec.get("mask_cleared"):  # playNano's `clear` step: no output, no key
            steps.append({"index": i, "name": "clear", "params": {}, "timestamp": rec.get("timestamp"), "step_type": "clear", "mask_cleared": True})
            continue
        is_mask = rec.get("type") == "mask"
        key = rec.get("mask" if is_mask else "output_key") or f"step_{i}_{rec.get('name')}"
        step = {
            "index": i,
            "name": rec.get("name"),
            "params": rec.get("params", {}),
            "timestamp": rec.get("timestamp"),
            "version": rec.get("xafm_version"),
            "function_module": rec.get("module"),
            "step_type": "mask" if is_mask else "filter",
            ("mask_key" if is_mask else "processed_key"): key,
        }
        steps.append(step)
        keys_by_name.setdefault(str(rec.get("name")), []).append(key)
    sources = [r for r in recs if r.get("type") in ("read", "create")]
    acquisition = dict(acq) if isinstance(acq, dict) else {}
    if sources:
        acquisition.setdefault("source", sources[0].get("path") or sources[0].get("function"))
    return {
        "acquisition": jsonable(acquisition),
        "environment": environment(),
        "processing": {"steps": steps, "keys_by_name": keys_by_name},
        "analysis": {"frame_times": None, "steps": [], "results_by_name": {}},
        XAFM_KEY: {"format_version": FORMAT_VERSION, "records": recs},
    }


def from_playnano(obj: Any) -> tuple[list[Record], dict[str, Any]]:
    """Records and acquisition metadata from a bundle's provenance JSON.

    Files written by xafm carry the record list under ``xafm``; files written by playNano
    get one ``step`` record per playNano processing step, marked ``origin: playNano``.
    """
    if isinstance(obj, list):
        return [r if isinstance(r, dict) else {"type": "note", "value": r} for r in obj], {}
    if not isinstance(obj, dict):
        return [], {}
    found = obj.get("acquisition")
    acquisition: dict[str, Any] = found if isinstance(found, dict) else {}
    own = obj.get(XAFM_KEY)
    if isinstance(own, dict) and isinstance(own.get("records"), list):
        return [r for r in own["records"] if isinstance(r, dict)], acquisition
    recs: list[Record] = []
    env = obj.get("environment")
    recs.append({"type": "read", "origin": "playNano", "environment": env if isinstance(env, dict) else {}})
    found = obj.get("processing")
    processing: dict[str, Any] = found if isinstance(found, dict) else {}
    for step in processing.get("steps") or []:
        if not isinstance(step, dict):
            continue
        if step.get("step_type") == "clear":
            recs.append({"type": "mask", "origin": "playNano", "name": "clear", "params": {}, "timestamp": step.get("timestamp"), "mask_cleared": 1})
            continue
        recs.append(
            {
                "type": "mask" if step.get("step_type") == "mask" or "mask_key" in step else "step",
                "origin": "playNano",
                "name": step.get("name"),
                "params": step.get("params", {}),
                "timestamp": step.get("timestamp"),
                "version": step.get("version"),
                "module": step.get("function_module"),
                **({"output_key": step["processed_key"]} if "processed_key" in step else {}),
                **({"mask": step["mask_key"]} if "mask_key" in step else {}),
            }
        )
    analysis = obj.get("analysis")
    if isinstance(analysis, dict) and (analysis.get("steps") or analysis.get("results_by_name")):
        recs.append({"type": "analysis", "origin": "playNano", "analysis": obj["analysis"]})
    return recs, acquisition
