"""``xafm demo``: a synthetic high-speed AFM video, levelled, exported to every format, read back.

The video imitates what an HS-AFM instrument records: particles diffusing on a substrate
that is tilted (piezo/sample tilt), noisy, and carries per-scan-line offsets (feedback
drift between lines), which is exactly what ``remove_plane`` and ``align_rows`` exist for.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import registry
from .core import conventions, model


def synthetic_video(
    n_frames: int = 200,
    size: int = 128,
    *,
    pixel_size_nm: float = 1.0,
    frame_interval_s: float = 0.1,
    n_particles: int = 12,
    seed: int = 0,
) -> xr.DataArray:
    """A (time, y, x) stack in nm: diffusing particles on a tilted, noisy substrate with
    scan-line offsets. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    pos = rng.uniform(0.1 * size, 0.9 * size, size=(n_particles, 2))
    heights = rng.uniform(2.0, 6.0, n_particles)  # nm, like small proteins
    radii = rng.uniform(2.0, 5.0, n_particles) / pixel_size_nm
    tilt = (rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08))  # nm per pixel
    frames = np.empty((n_frames, size, size), dtype=np.float32)
    step = 0.8 / pixel_size_nm  # diffusion step, pixels per frame
    for t in range(n_frames):
        pos += rng.normal(0.0, step, size=pos.shape)
        pos %= size  # periodic, so particles stay in view
        img = tilt[0] * xx + tilt[1] * yy + 5.0
        for (py, px), h, r in zip(pos, heights, radii):
            img += h * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * r**2))
        img += rng.normal(0.0, 0.15, size=img.shape)  # instrument noise
        img += rng.normal(0.0, 0.6, size=(size, 1))  # scan-line offsets
        frames[t] = img
    times = np.arange(n_frames) * frame_interval_s
    line_rate = size / frame_interval_s
    frame_metadata = [
        {"frame_duration_s": frame_interval_s, "line_rate": line_rate, "scan_direction": "down" if t % 2 else "up"}
        for t in range(n_frames)
    ]
    return model.stack(
        frames,
        pixel_size_nm=pixel_size_nm,
        times=times,
        channel="height",
        units="nm",
        frame_metadata=frame_metadata,
        attrs={conventions.ACQUISITION_ATTR: f'{{"instrument": "xafm synthetic HS-AFM", "seed": {seed}}}'},
    )


def _same(a: xr.DataArray, b: xr.DataArray) -> bool:
    """Round-trip check for the bundle formats: values (as float32), coords, masks, layers."""
    if a.shape != b.shape:
        return False
    if not np.allclose(a.values.astype(np.float32), b.values, equal_nan=True):
        return False
    for dim in conventions.DIMS:
        if not np.allclose(a[dim].values, b[dim].values, rtol=1e-6):
            return False
    if set(model.masks(a)) != set(model.masks(b)) or set(model.layers(a)) != set(model.layers(b)):
        return False
    return all(np.array_equal(model.masks(a)[k].values, model.masks(b)[k].values) for k in model.masks(a))


def _frames_in(path: Path) -> int:
    """Frames in a written animation (GIF, video, or a folder of images), read back."""
    if path.is_dir():
        return sum(1 for p in path.iterdir() if p.suffix in (".png", ".jpg"))
    if path.suffix == ".gif":
        from PIL import Image

        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    import imageio_ffmpeg

    return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])


def run(outdir: str | os.PathLike = "xafm-demo", *, n_frames: int = 200, size: int = 128, overwrite: bool = True) -> list[dict[str, Any]]:
    """Build, level, export every writable format, read back; return one row per format."""
    import xafm

    outdir = Path(outdir)
    raw = synthetic_video(n_frames, size)
    levelled = raw.afm.remove_plane(keep_layer=True).afm.align_rows()
    levelled = levelled.afm.mask_threshold(2.0, name="particles")
    rows = []
    for fmt in registry.table().values():
        if not fmt.can_write:
            continue
        path = outdir / f"demo{fmt.suffixes[0]}"
        t0 = time.perf_counter()
        ok: bool | str
        try:
            registry.write(fmt, levelled, path, overwrite=overwrite)
            if fmt.can_read:
                back = xafm.open(path)
                ok = _same(levelled, back)
            else:
                ok = _frames_in(path) == n_frames
        except Exception as exc:  # report every format, even one that fails
            ok = f"FAILED: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        size_b = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else (path.stat().st_size if path.exists() else 0)
        rows.append({"format": fmt.name, "file": str(path), "bytes": size_b, "seconds": seconds, "ok": ok})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'format':<8} {'file':<34} {'size':>10} {'seconds':>8}  round-trip OK"]
    for r in rows:
        size = f"{r['bytes'] / 2**20:.1f} MiB"
        ok = "yes" if r["ok"] is True else ("NO" if r["ok"] is False else str(r["ok"]))
        lines.append(f"{r['format']:<8} {r['file']:<34} {size:>10} {r['seconds']:>8.2f}  {ok}")
    return "\n".join(lines)
