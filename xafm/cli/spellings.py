"""playNano 0.5's spellings of the command-line values, read into xafm's.

A playNano command line works unchanged: ``--export tif,npz,h5`` (or space separated,
``hdf5``/``tiff`` too), its colormap names, ``--scale-bar-nm 0`` for no bar, and the output
names it derives (``NAME_filtered.*``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: Export format spellings accepted besides xafm's own registry names.
FORMAT_ALIASES = {"hdf5": "h5", "hdf": "h5", "tiff": "tif", "ome.tif": "tif", "ome.tiff": "tif", "ometiff": "tif", "ome-tiff": "tif", "ome.zarr": "zarr"}

#: playNano's colormaps (its ``resources/colormaps``) drawn with xafm's own maps: its
#: brown default and the classic map as xafm's classic brown-gold ``xafm_afm``, its
#: gold map as the perceptually uniform ``xafm_afm_uniform``; ``_r`` reverses each.
CMAP_ALIASES = {"afm_brown": "xafm_afm", "classic_afm": "xafm_afm", "playnano_gold": "xafm_afm_uniform"}

#: Characters playNano refuses in an output name (a name is not a path).
INVALID_NAME_CHARS = '\\/:*?"<>|'

#: Suffixes an ``--output-name`` may carry by habit; they are dropped (``x.h5`` -> ``x``).
OUTPUT_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.zarr", ".tif", ".tiff", ".h5", ".hdf5", ".npz", ".zarr", ".gif", ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".png", ".jpg")


def export_formats(values: list[str]) -> list[str]:
    """``["tif,npz", "h5"]`` -> ``["tif", "npz", "h5"]``: commas or spaces, playNano's
    quoting (``"'tif,h5'"``) and aliases; repeated formats once."""
    out: list[str] = []
    for value in values:
        for token in value.strip().strip("'\"").split(","):
            token = token.strip().lower().lstrip(".")
            if token:
                token = FORMAT_ALIASES.get(token, token)
                if token not in out:
                    out.append(token)
    return out


def colormap_name(name: str) -> str:
    """xafm's name for a playNano colormap name; any other name as it is."""
    base, rev = (name[:-2], "_r") if name.endswith("_r") else (name, "")
    return CMAP_ALIASES[base] + rev if base in CMAP_ALIASES else name


def scale_bar(text: str) -> float | str | None:
    """``--scale-bar-nm``: ``auto`` (a round fifth of the width), ``none`` or ``0`` (no bar,
    as playNano's 0) or a positive length in nm; None means no bar."""
    t = str(text).strip().lower()
    if t == "auto":
        return "auto"
    if t in ("none", "off", "no"):
        return None
    try:
        nm = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"use auto, none or a length in nm (e.g. 50), not {text!r}") from None
    if nm == 0:
        return None
    if not nm > 0 or nm == float("inf"):
        raise argparse.ArgumentTypeError(f"use auto, none or a positive length in nm, not {text!r}")
    return nm


def z_limit(text: str) -> Any:
    """``--zmin``/``--zmax``: ``auto`` (1st/99th percentile), ``none`` (minimum/maximum) or a number."""
    from ..animation import parse_zlimit
    from ..exceptions import RenderError

    try:
        return parse_zlimit(text)
    except RenderError:
        raise argparse.ArgumentTypeError(f"use auto (1st/99th percentile), none (minimum/maximum) or a number, not {text!r}") from None


def video_quality(text: str) -> float:
    """``--video-quality``: a number from 0 (smallest file) to 10 (best), as ``to_video``'s ``quality``."""
    try:
        q = float(text)
    except ValueError:
        q = float("nan")
    if not 0 <= q <= 10:
        raise argparse.ArgumentTypeError(f"use a number from 0 (smallest) to 10 (best), not {text!r}")
    return q


def output_name(name: str | None, input_path: str) -> str:
    """The base name of every output: ``--output-name`` without a suffix it may carry
    (``x.h5`` -> ``x``), else the input's name without its suffix, as playNano names them."""
    from ..exceptions import FormatError

    base = (name or "").strip()
    if not base:
        base = Path(input_path.rstrip("/\\")).name
        lower = base.lower()
        for suffix in (".ome.tif", ".ome.tiff", ".ome.zarr"):
            if lower.endswith(suffix):
                return base[: -len(suffix)]
        return Path(base).stem or "xafm_export"
    lower = base.lower()
    for suffix in OUTPUT_SUFFIXES:
        if lower.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    bad = sorted({c for c in base if c in INVALID_NAME_CHARS})
    if bad or base in (".", ".."):
        raise FormatError(f"--output-name must be a file name without {' '.join(INVALID_NAME_CHARS)}, got {name!r}")
    return base


def storage_options(text: str) -> dict[str, Any]:
    """``--storage-options '{"anon": true}'`` -> fsspec's options for the URLs of a command."""
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"give a JSON object, e.g. '{{\"anon\": true}}', not {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"give a JSON object, e.g. '{{\"anon\": true}}', not {text!r}")
    return value
