"""Synthetic Nanosurf ``.nhf`` files (file format 1.1), as ``docs/formats.md`` describes them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: numpy dtype -> ``dataset_element_type`` of file format 1.x.
ELEMENT_TYPES = {"int32": 0, "uint8": 1, "uint16": 2, "uint32": 3, "uint64": 4, "int16": 5, "int64": 6, "float64": 7}


def write_nhf(
    path: str | Path,
    segments: Mapping[str, Mapping[str, np.ndarray]],
    *,
    name: str = "Image 1",
    size_m: tuple[float, float] = (1e-5, 1e-5),
    calibration: Mapping[str, tuple[float, float, str]] | None = None,
    measurement_type: str = "wavemode_nma",
    curve_samples: int = 0,
    scan_direction: str = "up",
    line_rate: float = 2.0,
    version: tuple[int, int] = (1, 1),
    spectroscopy: int = 0,
    lines: int | None = None,
) -> Path:
    """Write a ``.nhf`` file with one image measurement (``measurement_0``).

    Parameters
    ----------
    segments : mapping
        Segment name (``"Forward"``) -> channel name (``"Topography"``) -> raw array of shape
        (lines, points) in stored order (row 0 is the first stored line, the bottom), stored
        flat with its own integer type.
    calibration : mapping
        Channel -> (``base_calibration_min``, ``base_calibration_max``, unit); channels left
        out carry no calibration attributes (as ``nma_interaction_min``).
    curve_samples : int
        When > 0, each segment also gets a per-pixel curve dataset ``NMA Deflection`` of
        lines x points x ``curve_samples`` int16 values (not an image), and the measurement a
        ``NMA Free Wave`` of that many values.
    spectroscopy : int
        When > 0, the file holds only a ``spectroscopy_grid`` measurement of that many
        curves (no image size), and ``segments`` is ignored.
    lines : int or None
        ``image_number_of_lines`` to claim instead of the arrays' (lying headers).
    """
    import h5py

    cal = dict(calibration or {})
    out = Path(path)
    with h5py.File(out, "w") as f:
        f.attrs["nsf_file_version_major"] = np.uint32(version[0])
        f.attrs["nsf_file_version_minor"] = np.uint32(version[1])
        f.attrs["created"] = "2023-07-18T15:27:41.837Z"
        m = f.create_group("measurement_0")
        if spectroscopy:
            m.attrs["name"] = "Spectroscopy 1"
            m.attrs["measurement_type"] = "spectroscopy_grid"
            seg = m.create_group("segment_0")
            seg.attrs["name"] = "Approach"
            _dataset(seg, "dataset_0", "Deflection", np.arange(spectroscopy * 64, dtype=np.int32), (-1e-6, 1e-6, "N"))
            return out
        first = np.asarray(next(iter(next(iter(segments.values())).values())))
        n_lines, points = first.shape
        attrs: dict[str, Any] = {
            "name": name, "measurement_type": measurement_type, "created": "2023-07-18T15:26:38.320Z",
            "image_points_per_line": np.uint32(points), "image_number_of_lines": np.uint32(lines or n_lines),
            "image_size_x": float(size_m[0]), "image_size_y": float(size_m[1]),
            "image_scan_direction": scan_direction, "image_line_rate": float(line_rate),
        }  # fmt: skip
        m.attrs.update(attrs)
        if curve_samples:
            _dataset(m, "dataset_0", "NMA Free Wave", np.zeros(curve_samples, np.int16), (-5.0, 5.0, "V"))
        for s, (segment, channels) in enumerate(segments.items()):
            seg = m.create_group(f"segment_{s}")
            seg.attrs["name"] = segment
            for c, (channel, raw) in enumerate(channels.items()):
                _dataset(seg, f"dataset_{c}", channel, np.asarray(raw).reshape(-1), cal.get(channel))
            if curve_samples:
                curves = np.zeros(n_lines * points * curve_samples, np.int16)
                _dataset(seg, f"dataset_{len(channels)}", "NMA Deflection", curves, (-5.0, 5.0, "V"))
    return out


def _dataset(group: Any, key: str, name: str, flat: np.ndarray, calibration: tuple[float, float, str] | None) -> None:
    ds = group.create_dataset(key, data=flat)
    ds.attrs["name"] = name
    ds.attrs["dataset_element_type"] = np.uint32(ELEMENT_TYPES[flat.dtype.name])
    ds.attrs["dataset_size"] = np.uint64(flat.size)
    if calibration is not None:
        ds.attrs["base_calibration_min"] = float(calibration[0])
        ds.attrs["base_calibration_max"] = float(calibration[1])
        ds.attrs["base_calibration_unit"] = calibration[2]
