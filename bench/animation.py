"""Benchmark: annotated GIF / MP4 / PNG-sequence exports, xafm against playNano, in one run,
on a synthetic stack and on a real HS-AFM video.

Run from the project root with an environment that has both xafm and playNano (playNano
is GPL, so it lives only in the benchmark's own venv, never in xafm's dependencies)::

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install playnano && /work/bench-venv/bin/pip install -e .
    /work/bench-venv/bin/python -m bench.animation [--frames 100 --size 512 --repeat 5]

Two stacks, each levelled as users export them (``da.afm.remove_plane().afm.align_rows()``):

* ``synthetic``: xafm's synthetic HS-AFM video (``xafm.demo.synthetic_video``: diffusing
  particles, noise, tilt and line offsets), ``--frames`` frames of ``--size`` px at
  0.25 nm/px, 100 nm scale bar;
* ``asd``: the real sample ``--asd`` (32 frames of 200 x 200 at 0.5 nm/px, a RIBM
  HS-AFM video), 20 nm scale bar (100 nm would not fit its 100 nm wide frames).

What playNano is given, for each stack: ``stack = da.values`` (the levelled stack as a
C-contiguous float64 array), ``pixel_sizes_nm = [x pixel size] * n``, ``timestamps =
list(da.time)`` (seconds), the same scale bar length, ``fps=5.0``, ``zmin="auto",
zmax="auto"`` (its 1st/99th percentile), its default colormap (afmhot); its GIF and MP4
writers and its PNG image sequence. xafm is called on the levelled DataArray with the
same scale bar and fps and its defaults otherwise (z-scale ``"auto"``: 1st/99th
percentile, timestamps, its own colormap). playNano's video is its default for ``.mp4``
(OpenCV, MPEG-4 part 2); xafm's is H.264 (libx264, yuv420p). playNano upscales frames to
at least 512 px tall with cv2; xafm upscales by an integer factor to at least 320 px
(200 -> 400 px for the real stack).

The exports of one kind are timed together, best of ``--repeat`` interleaved rounds after
an untimed warm-up round, so their ratios come from one run. The MP4 group also times "x264
alone": xafm's ffmpeg command and pipe fed the same frames rendered beforehand, the
encoder's own cost, which the whole export (z-scale, rendering, encoding) is measured
against.

``--memory`` adds a streaming check: a dask stack many times larger than the frames
rendered (generated lazily, chunk by chunk) exported to MP4 in a subprocess, with the peak
RSS printed. ``--docs-images`` regenerates docs/images/ (example GIF, colormap picture).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_ASD = ROOT.parent / "shared" / "data" / "afm" / "asd_sample_0.asd"  # the shared sample data beside the project


#: Seconds of rest (untimed) before each timed call, so what one call leaves behind (its
#: encoder process exiting, memory being freed) does not land on the next.
SETTLE_S = 0.2


def interleaved_best(candidates: dict[str, Any], repeat: int) -> dict[str, float]:
    """Best wall time of each candidate over ``repeat`` rounds after an untimed warm-up
    round; candidates take turns, so load from other processes hits all of them alike."""
    best = {name: float("inf") for name in candidates}
    for round_ in range(repeat + 1):
        for name, fn in candidates.items():
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if round_:
                best[name] = min(best[name], dt)
    return best


def machine() -> str:
    from bench.read_asd import machine as _machine

    return _machine()


def test_stack(n_frames: int, size: int) -> Any:
    from xafm.demo import synthetic_video

    # 0.25 nm pixels and 60 particles: particles tens of pixels wide covering a good part
    # of the frame, as in HS-AFM videos of proteins (with 1 nm pixels the 1st-99th
    # percentile scale would show almost only substrate noise)
    da = synthetic_video(n_frames, size, pixel_size_nm=0.25, n_particles=60, seed=1)
    da = da.afm.remove_plane().afm.align_rows()
    return da.astype(np.float64)


def real_stack(path: Path) -> Any:
    """The real video, read and levelled as users export it, in memory as float64."""
    import xafm

    da = xafm.open(path).afm.remove_plane().afm.align_rows()
    return da.astype(np.float64).load()


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size


def playnano_calls(da: Any, bar_nm: float, tmp: Path) -> dict[str, Any] | None:
    """playNano's GIF, MP4 and PNG-sequence writers on exactly what the module docstring
    says it is given; None when playNano is not installed."""
    try:
        logging.getLogger("playnano").setLevel(logging.ERROR)
        from playnano.io.gif_export import create_gif_with_scale_and_timestamp
        from playnano.io.image_sequence_export import create_image_sequence
        from playnano.io.video_export import create_video_with_scale_and_timestamp
    except ImportError:
        return None
    stack = np.ascontiguousarray(da.values, dtype=np.float64)
    times = [float(t) for t in da["time"].values]
    px = [float(da.afm.pixel_size_nm)] * stack.shape[0]
    common = dict(zmin="auto", zmax="auto")

    def seq() -> None:
        shutil.rmtree(tmp / "pn_frames", ignore_errors=True)
        create_image_sequence(stack, px, times, bar_nm, output_folder=str(tmp / "pn_frames"), fmt="png", **common)

    return {
        "gif": lambda: create_gif_with_scale_and_timestamp(stack, px, times, bar_nm, output_path=str(tmp / "pn.gif"), fps=5.0, **common),
        "mp4": lambda: create_video_with_scale_and_timestamp(stack, px, times, bar_nm, output_path=str(tmp / "pn.mp4"), fps=5.0, **common),
        "png": seq,
    }


#: group -> rows: (name, writer, keywords, output name); the first row of a group is the default
GROUPS = {
    "gif": [
        ("GIF (default, auto)", "to_gif", {}, "x.gif"),
        ("GIF (fast)", "to_gif", {"compression": "fast"}, "xf.gif"),
        ("GIF (lzw)", "to_gif", {"compression": "lzw"}, "xl.gif"),
    ],
    "mp4": [
        ("MP4 (H.264)", "to_video", {}, "x.mp4"),
        ("MP4 (H.264 q4)", "to_video", {"quality": 4}, "x4.mp4"),
    ],
    "png": [("PNG sequence", "to_frames", {}, "x_frames")],
}
PLAYNANO_OUT = {"gif": "pn.gif", "mp4": "pn.mp4", "png": "pn_frames"}


def run_compare(da: Any, bar_nm: float, repeat: int, tmp: Path, only: list[str] | None = None) -> dict[str, Any]:
    from xafm import animation

    pn = playnano_calls(da, bar_nm, tmp)
    results: dict[str, Any] = {}
    for group, rows in GROUPS.items():
        if only and not any(o.lower() in group for o in only):
            continue
        cand: dict[str, Any] = {}
        for name, writer, kw, out in rows:
            opts = {"scale_bar_nm": bar_nm, "overwrite": True, **({} if writer == "to_frames" else {"fps": 5.0}), **kw}
            cand[name] = functools.partial(getattr(animation, writer), da, tmp / out, **opts)
        if group == "mp4":
            cand["x264 alone"] = encoder_alone(da, bar_nm, tmp)
        if pn is not None:
            cand["playNano"] = pn[group]
        best = interleaved_best(cand, repeat)
        for name, _, _, out in rows:
            row: dict[str, Any] = {"xafm_s": best[name], "xafm_bytes": size_of(tmp / out)}
            if pn is not None:
                row.update(playnano_s=best["playNano"], playnano_bytes=size_of(tmp / PLAYNANO_OUT[group]), speedup=best["playNano"] / best[name])
            if group == "mp4" and name == rows[0][0]:  # the same frames and encoder settings as x264 alone
                row["x264_alone_s"] = best["x264 alone"]
                row["over_x264_alone"] = best[name] / best["x264 alone"]
            results[name] = row
            print(f"  {name}: {row}", flush=True)
        if group == "mp4":
            row = {"xafm_s": best["x264 alone"]}
            if pn is not None:
                row.update(playnano_s=best["playNano"], speedup=best["playNano"] / best["x264 alone"])
            results["x264 alone"] = row
    return results


def encoder_alone(da: Any, bar_nm: float, tmp: Path) -> Any:
    """xafm's own ffmpeg command and pipe fed the export's frames rendered beforehand
    (z-scale and rendering excluded): the encoder's own cost on this machine."""
    from xafm.animation import video
    from xafm.render import FrameRenderer, RenderOptions

    r = FrameRenderer(da, RenderOptions(scale_bar_nm=bar_nm), pad_to=2, action="to_video")
    frames = [r.yuv420(r.indices(f, i)) for i, f in r.frames()]
    out = tmp / "encoder.mp4"
    command, _ = video.video_command(out, r.size, fps=5.0, codec=None, quality=video.DEFAULT_QUALITY, preset=None)

    def run() -> None:  # without the provenance input: the encoder alone
        with video._FfmpegInput(out, [*command, str(out)]) as ffmpeg:
            for f in frames:
                ffmpeg.write(f)
            ffmpeg.finish()

    return run


MEMORY_SCRIPT = r"""
import sys, time
import numpy as np, dask.array as dsa
import xafm
from xafm import animation
n, size, chunk = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def hwm():  # peak RSS of this process (ru_maxrss would include the parent's at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
def make(block_id):
    rng = np.random.default_rng(block_id[0])
    k = block_id[0] * chunk + np.arange(chunk, dtype=np.float32)[:, None, None]
    field = np.sin(xx / 23.0 + k / 7.0) * np.cos(yy / 31.0 - k / 11.0)
    return field + 0.05 * rng.standard_normal((chunk, size, size), dtype=np.float32)
arr = dsa.map_blocks(make, chunks=((chunk,) * (n // chunk), (size,), (size,)), dtype=np.float32)
da = xafm.stack(arr, pixel_size_nm=1.0)
base = hwm()
t0 = time.perf_counter()
animation.to_video(da, sys.argv[4], overwrite=True)
dt = time.perf_counter() - t0
peak = hwm()
print(f"{arr.nbytes / 2**20:.0f} {dt:.2f} {base:.0f} {peak:.0f}")
"""


def run_memory(tmp: Path, n: int = 1000, size: int = 512, chunk: int = 10) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(n), str(size), str(chunk), str(tmp / "mem.mp4")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    stack_mb, secs, base, peak = (float(v) for v in out.stdout.split())
    return {"stack_MiB": stack_mb, "seconds": secs, "rss_before_MiB": base, "rss_peak_MiB": peak}


def docs_images(outdir: Path) -> list[Path]:
    """The example GIF and the colormap picture of docs/animation.md."""
    from PIL import Image, ImageDraw

    from xafm import animation, render
    from xafm.demo import synthetic_video
    from xafm.render import overlay

    outdir.mkdir(parents=True, exist_ok=True)
    da = synthetic_video(18, 100, pixel_size_nm=0.5, n_particles=10, seed=3).afm.remove_plane().afm.align_rows()
    gif = animation.to_gif(da, outdir / "example.gif", fps=6, scale_bar_nm=10, upscale=2, overwrite=True)

    names = ["xafm_afm", "xafm_afm_uniform", "afmhot", "viridis"]
    w, bar_h, label_w, gap = 512, 36, 150, 10
    im = Image.new("RGB", (label_w + w + gap, len(names) * (bar_h + gap) + gap), "white")
    draw = ImageDraw.Draw(im)
    font = overlay._font(15)
    for k, name in enumerate(names):
        pal = render.build_palette(name)
        y = gap + k * (bar_h + gap)
        row = np.repeat(pal[np.linspace(0, render.N_DATA - 1, w).astype(int)][None], bar_h, axis=0)
        im.paste(Image.fromarray(row), (label_w, y))
        draw.text((8, y + bar_h // 2), name, fill="black", font=font, anchor="lm")
    cmaps = outdir / "colormaps.png"
    im.save(cmaps, optimize=True)
    return [gif, cmaps]


def print_table(title: str, rows: dict[str, Any]) -> None:
    print(f"\n{title}:")
    print(f"{'export':<20} {'xafm s':>8} {'playNano s':>11} {'speed-up':>9} {'xafm MB':>8} {'playNano MB':>12} {'/ x264 alone':>13}")
    nan = float("nan")
    for name, row in rows.items():
        ratio = f"{row['over_x264_alone']:12.2f}x" if "over_x264_alone" in row else ""
        size = f"{row['xafm_bytes'] / 1e6:8.2f}" if "xafm_bytes" in row else " " * 8
        pn_size = f"{row['playnano_bytes'] / 1e6:12.2f}" if "playnano_bytes" in row else " " * 12
        print(f"{name:<20} {row['xafm_s']:8.3f} {row.get('playnano_s', nan):11.3f} {row.get('speedup', nan):8.1f}x {size} {pn_size} {ratio}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--asd", type=Path, default=REAL_ASD, help="the real .asd video")
    ap.add_argument("--stacks", nargs="*", default=["synthetic", "asd"], choices=["synthetic", "asd"])
    ap.add_argument("--memory", action="store_true", help="also run the streaming-memory check")
    ap.add_argument("--docs-images", action="store_true", help="regenerate docs/images/ and exit")
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    ap.add_argument("--only", nargs="*", default=None, help="run only these groups: gif, mp4, png")
    args = ap.parse_args(argv)
    if args.docs_images:
        for p in docs_images(ROOT / "docs" / "images"):
            print(f"{p}: {p.stat().st_size / 1e3:.0f} kB")
        return 0
    print(machine())
    results: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "stacks": {}}
    with tempfile.TemporaryDirectory(prefix="xafm-bench-anim-") as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # playNano's own warnings
        tmp = Path(d)
        for which in args.stacks:
            if which == "synthetic":
                da, bar, title = test_stack(args.frames, args.size), 100.0, f"synthetic: {args.frames} frames of {args.size}x{args.size}"
            else:
                da, bar, title = real_stack(args.asd), 20.0, f"{args.asd.name} (real, levelled): {{n}} frames of {{h}}x{{w}}"
                title = title.format(n=da.shape[0], h=da.shape[1], w=da.shape[2])
            print(f"\n{title}, scale bar {bar:g} nm", flush=True)
            rows = run_compare(da, bar, args.repeat, tmp, args.only)
            results["stacks"][which] = {"title": title, "shape": list(da.shape), "scale_bar_nm": bar, "exports": rows}
        for entry in results["stacks"].values():
            print_table(f"{entry['title']} (best of {args.repeat})", entry["exports"])
        if args.memory:
            mem = run_memory(tmp)
            results["memory"] = mem
            print(
                f"\nstreaming: {mem['stack_MiB']:.0f} MiB dask stack -> MP4 in {mem['seconds']:.1f} s, "
                f"peak RSS {mem['rss_peak_MiB']:.0f} MiB (before export {mem['rss_before_MiB']:.0f} MiB)"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
