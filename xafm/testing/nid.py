"""Synthetic Nanosurf ``.nid`` files, as ``docs/formats.md`` describes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Default value scale per signal: (Dim2Min, Dim2Range, Dim2Unit).
DEFAULT_SCALES: dict[str, tuple[float, float, str]] = {
    "Z-Axis": (-1e-7, 2e-7, "m"),
    "Tip Current": (-1e-7, 2e-7, "A"),
    "Deflection": (-2.5e-6, 5e-6, "N"),
}


def _section(name: str, values: Mapping[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{k}={v}" for k, v in values.items())]


def write_nid(
    path: str | Path,
    groups: Mapping[str, Mapping[str, np.ndarray]],
    *,
    x_range_m: float = 2e-6,
    y_range_m: float = 2e-6,
    scales: Mapping[str, tuple[float, float, str]] | None = None,
    bits: int = 16,
    signed: bool = True,
    scan_direction: str = "Up",
    time_per_line: str = "500ms",
    date: str = "03-11-2022",
    time: str = "11:46:25",
    claim: Mapping[str, Any] | None = None,
    extra_sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a ``.nid`` image file: the ``[DataSet]`` group table, ``[DataSet-Info]``, one
    ``[DataSet-g:c]`` section per channel, ``#!``, then the raw blocks in table order.

    Parameters
    ----------
    groups : mapping
        Group name (``"Scan forward"``) -> signal name (``"Z-Axis"``) -> raw integer array
        of shape (lines, points) in stored order (row 0 is the first stored line, the
        bottom of the image).
    x_range_m, y_range_m : float
        ``Dim0Range`` / ``Dim1Range`` (m).
    scales : mapping
        Signal -> (Dim2Min, Dim2Range, Dim2Unit); :data:`DEFAULT_SCALES` for the rest
        ((0, 1, "V") for unknown signals).
    bits, signed : int, bool
        ``SaveBits`` and ``SaveSign`` (the arrays are stored as that integer type, Intel order).
    claim : mapping
        Keys written into every channel section instead of the true ones (``Points``,
        ``Lines``, ``SaveBits``: lying headers).
    extra_sections : mapping
        Further sections (``[DataSet\\Parameters\\Imaging]``...).
    """
    dtype = np.dtype(("<i" if signed else "<u") + str(bits // 8))
    scale_of = {**DEFAULT_SCALES, **(scales or {})}
    table: dict[str, Any] = {"Version": 2, "GroupCount": len(groups)}
    channel_sections: list[str] = []
    blobs: list[bytes] = []
    for g, (group, signals) in enumerate(groups.items()):
        table[f"Gr{g}-Name"] = group
        table[f"Gr{g}-ID"] = 0
        table[f"Gr{g}-Count"] = max(8, len(signals))
        for c, (signal, raw) in enumerate(signals.items()):
            arr = np.asarray(raw)
            lines, points = arr.shape
            ref = f"DataSet-{g}:{c}"
            table[f"Gr{g}-Ch{c}"] = ref
            z_min, z_range, unit = scale_of.get(signal, (0.0, 1.0, "V"))
            values: dict[str, Any] = {
                "Version": 2, "Points": points, "Lines": lines, "Frame": group, "CurLine": lines - 1,
                "Dim0Name": "X*", "Dim0Unit": "m", "Dim0Range": repr(x_range_m), "Dim0Min": 0,
                "Dim1Name": "Y*", "Dim1Unit": "m", "Dim1Range": repr(y_range_m), "Dim1Min": 0,
                "Dim2Name": signal, "Dim2Unit": unit, "Dim2Range": repr(z_range), "Dim2Min": repr(z_min),
                "SaveMode": "Binary", "SaveBits": bits, "SaveSign": "Signed" if signed else "Unsigned",
                "SaveOrder": "Intel",
            }  # fmt: skip
            values.update(claim or {})
            channel_sections += _section(ref, values)
            blobs.append(arr.astype(dtype).tobytes())
    info = {
        "-- Scan --": "--------", "Image size": f"{x_range_m * 1e6:g}µm", "Scan direction": scan_direction,
        "Time/Line": time_per_line, "Points": next(iter(next(iter(groups.values())).values())).shape[1],
        "Date": date, "Time": time, "-- Global --": "--------", "Op. mode": "Dynamic Force",
        "Software ver.": "3.10.0.28",
    }  # fmt: skip
    lines = _section("DataSet", table) + _section("DataSet-Info", info)
    for name, extra in (extra_sections or {}).items():
        lines += _section(name, extra)
    lines += channel_sections
    text = "\r\n".join(lines) + "\r\n\r\n"
    out = Path(path)
    out.write_bytes(text.encode("utf-8") + b"#!" + b"".join(blobs))
    return out


def write_nid_spectroscopy(path: str | Path, curves: Sequence[np.ndarray], *, bits: int = 16) -> Path:
    """Write a spectroscopy ``.nid`` file (no image): groups ``Spec forward`` and ``Spec
    backward``, one block each of ``len(curves)`` lines of as many points as the longest
    curve, with the per-line ``LineDim*`` keys Nanosurf writes for spectra."""
    n = max(len(c) for c in curves)
    raw = np.zeros((len(curves), n), dtype=np.int64)
    for i, c in enumerate(curves):
        raw[i, : len(c)] = c
    dtype = np.dtype("<i" + str(bits // 8))
    table: dict[str, Any] = {"Version": 2, "GroupCount": 2}
    sections: list[str] = []
    for g, group in enumerate(("Spec forward", "Spec backward")):
        table.update({f"Gr{g}-Name": group, f"Gr{g}-ID": 0, f"Gr{g}-Count": 1, f"Gr{g}-Ch0": f"DataSet-{g}:0"})
        values: dict[str, Any] = {
            "Version": 2, "Points": n, "Lines": len(curves), "Frame": group,
            "Dim0Name": "Z-Axis", "Dim0Unit": "m", "Dim0Range": "1e-06", "Dim0Min": 0,
            "Dim1Name": "Spec", "Dim1Unit": "", "Dim1Range": len(curves), "Dim1Min": 0,
            "Dim2Name": "Deflection", "Dim2Unit": "N", "Dim2Range": "5e-06", "Dim2Min": "-2.5e-06",
            "SaveMode": "Binary", "SaveBits": bits, "SaveSign": "Signed", "SaveOrder": "Intel",
            "LineDim0Min": 0, "LineDim0Range": "1e-06",
        }  # fmt: skip
        values.update({f"LineDim{i}Points": len(c) for i, c in enumerate(curves)})
        sections += _section(f"DataSet-{g}:0", values)
    header = _section("DataSet", table) + _section("DataSet-Info", {"-- Spectroscopy --": "--------", "Spec mode": "Force"})
    header += _section("DataSet\\SpecInfos", {"SubSectionCount": 0})
    text = "\r\n".join(header + sections) + "\r\n\r\n"
    out = Path(path)
    out.write_bytes(text.encode("utf-8") + b"#!" + raw.astype(dtype).tobytes() * 2)
    return out
