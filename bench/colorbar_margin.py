"""Measure the colour bar's margin: its width on frames of 128, 256 and 512 display px of
the real samples, and the time of an MP4 export with a colour bar (whose z-scale pass now
runs before ffmpeg starts, to size the margin by its labels).

Run from the project root; to compare two trees, run it once with each on ``PYTHONPATH``,
alternating (the numbers of docs/benchmarks.md, "Colour bar margin", come from that)::

    PYTHONPATH=. python -m bench.colorbar_margin [--repeat 3]

It prints one JSON object: ``widths`` (sample -> display side -> margin px) and
``mp4_s`` (best of ``--repeat`` for 100 frames of 512 x 512 synthetic video).

``--picture docs/images/colorbar_frame.png`` writes instead the example frame of
docs/animation.md: frame 0 of the 512 x 512 synthetic video as ``to_frames`` exports it
with its colour bar.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import xafm
from xafm import animation
from xafm.demo import synthetic_video
from xafm.render import FrameRenderer, RenderOptions

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "afm"


def widths() -> dict[str, dict[int, int]]:
    """The margin's width on a 128 x 128 crop of each real sample, upscaled 1, 2 and 4 times."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the samples' own warnings are tested elsewhere
        samples = {
            "sample_0.jpk (3312 .. 3358 nm)": xafm.open(SHARED / "sample_0.jpk"),
            "asd_sample_0.asd frames 24-27 (-249 .. 0 nm)": xafm.open(SHARED / "asd_sample_0.asd").isel(time=slice(24, 28)),
        }
    out: dict[str, dict[int, int]] = {}
    for name, da in samples.items():
        crop = da.isel(y=slice(0, 128), x=slice(0, 128))
        out[name] = {128 * k: FrameRenderer(crop, RenderOptions(colorbar=True, upscale=k)).colorbar_px for k in (1, 2, 4)}
    return out


def mp4_seconds(repeat: int) -> float:
    da = synthetic_video(100, 512)
    best = float("inf")
    with tempfile.TemporaryDirectory() as d:
        for i in range(repeat):
            t0 = time.perf_counter()
            animation.to_video(da, Path(d) / f"v{i}.mp4", colorbar=True, fsync=False)
            best = min(best, time.perf_counter() - t0)
    return best


def picture(out: Path) -> None:
    """Frame 0 of the synthetic video, exported by ``to_frames`` with a colour bar, at ``out``."""
    import shutil

    da = synthetic_video(1, 512)
    with tempfile.TemporaryDirectory() as d:
        folder = animation.to_frames(da, Path(d) / "frames", render=RenderOptions(colorbar=True), fsync=False)
        shutil.copyfile(next(folder.glob("*.png")), out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--picture", type=Path, help="write the example frame of docs/animation.md here, and nothing else")
    args = p.parse_args()
    if args.picture is not None:
        picture(args.picture)
        return
    print(json.dumps({"widths": widths(), "mp4_s": round(mp4_seconds(args.repeat), 3)}))


if __name__ == "__main__":
    main()
