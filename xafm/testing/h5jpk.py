"""Synthetic JPK / Bruker NanoWizard ``.h5-jpk`` videos, as ``docs/formats.md`` describes them."""

from __future__ import annotations

import numpy as np


def write_h5jpk(
    path,
    channels,
    *,
    ulength=1.5e-7,
    vlength=None,
    scan_rate=40.0,
    start_ms=None,
    end_ms=None,
    motion="topDown",
    reflect=False,
    compression="gzip",
    extra_meta=True,
):
    """Write a ``.h5-jpk`` file.

    ``channels`` is a list of dicts with ``name``, ``retrace``, ``raw`` (int32, shape
    (frames, jlength, ilength) in scan order: row 0 is the first line scanned, x fastest),
    and optional ``multiplier``, ``offset``, ``unit``, ``quantity``. Each channel becomes one
    (ilength * jlength, frames) dataset, one chunk per frame, as JPK writes them.
    """
    import h5py

    b = np.bytes_
    first = np.asarray(channels[0]["raw"])
    n, rows, cols = first.shape
    npix = rows * cols
    with h5py.File(path, "w") as f:
        f.attrs["file-format-info"] = b("JPK SCAN")
        f.attrs["file-format-version"] = b("3.0")
        m = f.create_group("Measurement_000")
        a = m.attrs
        a["position-pattern.grid.ilength"] = np.int32(cols)
        a["position-pattern.grid.jlength"] = np.int32(rows)
        a["position-pattern.grid.ulength"] = np.float64(ulength)
        a["position-pattern.grid.vlength"] = np.float64(ulength if vlength is None else vlength)
        a["position-pattern.grid.reflect"] = b("true" if reflect else "false")
        a["position-pattern.grid.unit.unit"] = b("m")
        if scan_rate is not None:
            a["timing-settings.scanRate"] = np.float64(scan_rate)
        a["motion"] = b(motion)
        a["environment.fast-imaging.image-scan-mode"] = b("fastXY")
        a["environment.fast-imaging.feed-forward-parameters.yaxis.interlace"] = b("false")
        a["feedback-settings.setpoint-feedback-settings.relative-setpoint"] = np.float64(0.75)
        a["feedback-settings.setpoint-feedback-settings.i-gain"] = np.float64(-1000.0)
        a["feedback-settings.setpoint-feedback-settings.p-gain"] = np.float64(-0.05)
        a["jpkspm_version"] = b("8.1.42")
        a["start-time"] = b("2025-05-28 14:41:58.548 +0100")
        for k, ch in enumerate(channels):
            g = m.create_group(f"Channel_{k:03d}")
            g.attrs["channel.name"] = b(ch["name"])
            g.attrs["channel.fancy-name"] = b(ch.get("fancy", ch["name"].title()))
            g.attrs["retrace"] = b("true" if ch["retrace"] else "false")
            g.attrs["type"] = b("channel-retrace")
            if ch.get("multiplier", 1.0) is not None:
                g.attrs["net-encoder.scaling.multiplier"] = np.float64(ch.get("multiplier", 1.0))
                g.attrs["net-encoder.scaling.offset"] = np.float64(ch.get("offset", 0.0))
                g.attrs["net-encoder.scaling.unit.unit"] = b(ch.get("unit", "m"))
            raw = np.asarray(ch["raw"], dtype=np.int32)
            columns = raw.reshape(n, npix).T
            ds = g.create_dataset(
                ch.get("quantity", ch["name"][:1].upper() + ch["name"][1:]),
                data=columns,
                chunks=(npix, 1),
                maxshape=(npix, None),
                compression=compression,
                compression_opts=1 if compression == "gzip" else None,
                shuffle=compression is not None,
            )
            ds.attrs["units"] = b(ch.get("unit", "m"))
            g.create_dataset("thumbnail", data=np.zeros((16, 1), np.int32))
        ix = np.arange(npix, dtype=np.uint32)
        m.create_dataset("Position_Indices", data=np.stack([ix % cols, ix // cols], axis=1))
        if start_ms is not None or extra_meta:
            meta = m.create_group("meta-data")
            if start_ms is not None:
                meta.create_dataset("start-times", data=np.asarray(start_ms, np.int64).reshape(-1, 1))
            if end_ms is not None:
                meta.create_dataset("end-times", data=np.asarray(end_ms, np.int64).reshape(-1, 1))
            if extra_meta:
                meta.create_dataset("i-gain", data=np.full((n, 1), -1000.0))
                meta.create_dataset("relative-setpoint", data=np.linspace(0.7, 0.8, n).reshape(n, 1))
    return path
