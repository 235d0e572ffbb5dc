"""Pipelines in playNano 0.5's spelling: a string or a YAML/JSON file of catalogue steps.

A pipeline is a list of ``(step name, params)``. The string form is playNano's
``"remove_plane; row_median_align; gaussian_filter:sigma=1.5"``: steps separated by
``;``, parameters after ``:`` as ``key=value`` separated by ``,``; a value is cast as
playNano casts it (``true``/``false`` to bool, text with a ``.`` to float, other numbers
to int, anything else stays text) and, beyond playNano, exponent notation (``1e-3``) to
float. The file form is playNano's YAML (JSON is YAML too)::

    filters:
      - name: remove_plane
      - name: gaussian_filter
        sigma: 1.5
      - name: mask_threshold          # xafm's addition: parameters may sit under
        params: {threshold: 2, name: bumps}   # `params:`, for a parameter called `name`

Every name is looked up in the catalogue (:mod:`xafm.processing.catalogue`) when the
pipeline is parsed, so a typo fails before any file is read; ``clear`` is playNano's step
that ends the current mask: later masked steps use no mask until a new one is made
(:func:`active_mask`). Steps run by playNano's pipeline rules
(:func:`~xafm.processing.masks.run_as_playnano`: a mask step overlays the current mask, a
levelling step fits around it) through the catalogue, so a dask stack stays lazy and every
step is recorded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from ..core.contract import undeclared
from ..exceptions import FileError, StackError
from .catalogue import catalogue, get
from .masks import current_mask, run_as_playnano

#: playNano's step that ends the current mask (it changes no values).
CLEAR = "clear"

Pipeline = list[tuple[str, dict[str, Any]]]

_EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def cast_value(text: str) -> Any:
    """A parameter value from a pipeline string, cast as playNano casts it.

    ``true``/``false`` (any case) give a bool; text with a ``.`` that is a number gives a
    float, other integers an int; exponent notation (``1e-3``, which playNano leaves as
    text) a float; anything else stays text.
    """
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        pass
    if _EXPONENT_NUMBER.fullmatch(text):
        return float(text)
    return text


def _check_name(name: str, where: str) -> str:
    if not name:
        raise StackError(f"{where}: a step without a name")
    if name != CLEAR:
        try:
            get(name)
        except StackError as exc:
            raise StackError(f"{where}: {exc}") from None
    return name


def _declared(name: str) -> dict[str, Any]:
    try:
        return dict(get(name).parameters())
    except StackError:
        return {}


def check_step(name: str, params: dict[str, Any], where: str = "pipeline") -> None:
    """Refuse a step whose parameters its signature does not declare, or that lacks one it
    needs, naming the ones it takes: a pipeline fails before any file is read."""
    declared = get(name).parameters()
    problem = undeclared(declared, params, "parameter")
    if problem:
        raise StackError(f"{where}: step {name!r} has {problem}")
    missing = [k for k, p in declared.items() if p.default is p.empty and k not in params]
    if missing:
        raise StackError(f"{where}: step {name!r} needs {', '.join(missing)} (e.g. {name}:{missing[0]}=...)")


def parse_string(text: str) -> Pipeline:
    """``"step; step:key=value,key=value; ..."`` as a list of ``(name, params)``."""
    steps: Pipeline = []
    for segment in text.split(";"):
        segment = segment.strip()
        if not segment:
            continue
        name, _, rest = segment.partition(":")
        name = _check_name(name.strip(), "pipeline")
        params: dict[str, Any] = {}
        for pair in rest.split(","):
            pair = pair.strip()
            if not pair:
                continue
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise StackError(f"pipeline: step {name!r}: {pair!r} is not key=value (e.g. {name}:{key.strip() or 'key'}=1.5)")
            params[key.strip()] = cast_value(value)
        check_step(name, params)
        steps.append((name, params))
    return steps


def parse_file(path: str | os.PathLike[str]) -> Pipeline:
    """playNano's pipeline file (YAML or JSON): a list of steps under ``filters``, each a
    mapping with ``name`` and the step's parameters."""
    import yaml  # pyyaml, declared (dask needs it too)

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileError(p, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(p, f"cannot read the pipeline file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        try:
            data = json.loads(text)
        except ValueError:
            raise FileError(p, f"not a YAML or JSON pipeline file ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or "filters" not in data:
        raise FileError(p, "a pipeline file needs a top-level 'filters:' list of steps")
    entries = data["filters"]
    if not isinstance(entries, list):
        raise FileError(p, "'filters' must be a list of steps (each '- name: STEP' plus its parameters)")
    steps: Pipeline = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise FileError(p, f"step {i} under 'filters' must be a mapping with a 'name'")
        params = {str(k): v for k, v in entry.items() if k != "name"}
        nested = params.get("params")
        if isinstance(nested, dict) and (entry["name"] == CLEAR or "params" not in _declared(entry["name"])):
            # xafm's addition: parameters under `params:`, for a step parameter called `name`
            del params["params"]
            params.update({str(k): v for k, v in nested.items()})
        try:
            name = _check_name(entry["name"].strip(), "pipeline file")
            check_step(name, params, f"step {i}")
        except StackError as exc:
            raise FileError(p, str(exc).removeprefix("pipeline file: ")) from None
        steps.append((name, params))
    return steps


def parse_pipeline(processing: str | None = None, processing_file: str | os.PathLike[str] | None = None) -> Pipeline:
    """The pipeline of a string or a file (one of them, as in playNano); none is empty."""
    if processing and processing_file is not None:
        raise StackError("give a pipeline as a string or as a file, not both")
    if processing_file is not None:
        return parse_file(processing_file)
    return parse_string(processing or "")


def active_mask(da: xr.DataArray) -> str | None:
    """The mask a masked step uses by default (:func:`xafm.processing.masks.current_mask`):
    the most recent one made since the stack was made or read, unless a ``clear`` came
    after it."""
    return current_mask(da)


def run_pipeline(da: xr.DataArray, steps: str | Sequence[tuple[str, dict[str, Any]]], *, keep_raw: bool = False) -> xr.DataArray:
    """Run ``steps`` (a pipeline string, or ``(name, params)`` pairs) in order, each by
    playNano's pipeline rules (:func:`~xafm.processing.masks.run_as_playnano`); lazy stacks stay lazy. ``keep_raw`` keeps the input as the ``raw`` layer (playNano's ``processed['raw']``)
    when the first step is one that can (it declares ``keep_layer``). A failing step is
    named with its place in the pipeline."""
    if isinstance(steps, str):
        steps = parse_string(steps)
    for i, (name, params) in enumerate(steps, start=1):
        if keep_raw and i == 1 and "keep_layer" in get(name).parameters() and "keep_layer" not in params:
            params = {**params, "keep_layer": True}
        try:
            da = run_as_playnano(da, name, **params)
        except StackError as exc:  # the step's own complaint, placed in the pipeline
            raise StackError(f"pipeline step {i} ({name}): {exc}") from None
    return da


def format_value(v: Any) -> str:
    """A default as a pipeline string would spell it."""
    if isinstance(v, bool):
        return str(v).lower()
    return "none" if v is None else str(v)


def describe_steps() -> str:
    """What ``xafm process --list`` prints: every step with its kind, one-line description
    and parameters (``name=default``, or ``name`` when it must be given)."""
    lines = []
    for name, entry in catalogue().items():
        params = []
        for p in entry.parameters().values():
            params.append(p.name if p.default is p.empty else f"{p.name}={format_value(p.default)}")
        lines.append(f"{name}  [{entry.kind}]  {entry.description}")
        lines.append(f"    parameters: {', '.join(params) if params else '-'}")
    return "\n".join(lines)


__all__ = ["CLEAR", "Pipeline", "active_mask", "cast_value", "check_step", "describe_steps", "parse_file", "parse_pipeline", "parse_string", "run_pipeline"]
