"""Benchmark: annotated GIF / MP4 / PNG-sequence exports, xafm against playNano, in one run.

Run from the project root with an environment that has both xafm and playNano (playNano
is GPL, so it lives only in the benchmark's own venv, never in xafm's dependencies)::

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install playnano && /work/bench-venv/bin/pip install -e .
    /work/bench-venv/bin/python -m bench.animation [--frames 100 --size 512 --repeat 3]

The stack is xafm's synthetic HS-AFM video (``xafm.demo.synthetic_video``: diffusing
particles, noise, tilt and line offsets), levelled (``remove_plane``, ``align_rows``) and
given to both tools as the same float64 array with the same options: 5 fps, 100 nm scale
bar, timestamps, z-scale ``"auto"`` (1st/99th percentile), afmhot for playNano and xafm's
default colormap for xafm. Each export is timed best of ``--repeat`` interleaved rounds
after an untimed warm-up round. playNano's video is its own default for ``.mp4`` (OpenCV,
MPEG-4 part 2); xafm's is H.264 (libx264, yuv420p). The MP4 row also times "x264
alone": xafm's ffmpeg command and pipe fed frames rendered beforehand, the floor the
export cannot go below on the machine.

``--memory`` adds a streaming check: a dask stack many times larger than the frames
rendered (generated lazily, chunk by chunk) exported to MP4 in a subprocess, with the peak
RSS printed. ``--docs-images`` regenerates docs/images/ (example GIF, colormap picture).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def interleaved_best(candidates: dict[str, Any], repeat: int) -> dict[str, float]:
    """Best wall time of each candidate over ``repeat`` rounds after an untimed warm-up
    round; candidates take turns, so load from other processes hits all of them alike."""
    best = {name: float("inf") for name in candidates}
    for round_ in range(repeat + 1):
        for name, fn in candidates.items():
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


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size


def run_compare(n_frames: int, size: int, repeat: int, tmp: Path, only: list[str] | None = None) -> dict[str, Any]:
    from xafm import animation

    da = test_stack(n_frames, size)
    stack = np.ascontiguousarray(da.values)
    times = [float(t) for t in da["time"].values]
    px = [float(da.afm.pixel_size_nm)] * n_frames

    cand: dict[str, Any] = {}
    try:
        logging.getLogger("playnano").setLevel(logging.ERROR)
        from playnano.io.gif_export import create_gif_with_scale_and_timestamp
        from playnano.io.image_sequence_export import create_image_sequence
        from playnano.io.video_export import create_video_with_scale_and_timestamp

        def pn_gif() -> None:
            create_gif_with_scale_and_timestamp(stack, px, times, 100, output_path=str(tmp / "pn.gif"), fps=5.0, zmin="auto", zmax="auto")

        def pn_mp4() -> None:
            create_video_with_scale_and_timestamp(stack, px, times, 100, output_path=str(tmp / "pn.mp4"), fps=5.0, zmin="auto", zmax="auto")

        def pn_seq() -> None:
            shutil.rmtree(tmp / "pn_frames", ignore_errors=True)
            create_image_sequence(stack, px, times, 100, output_folder=str(tmp / "pn_frames"), fmt="png", zmin="auto", zmax="auto")

        have_playnano = True
    except ImportError:
        have_playnano = False

    opts = dict(fps=5.0, scale_bar_nm=100, overwrite=True)
    fopts = dict(scale_bar_nm=100, overwrite=True)
    pairs = {
        "GIF": (lambda: animation.to_gif(da, tmp / "x.gif", **opts), pn_gif if have_playnano else None, "x.gif", "pn.gif"),
        "GIF (lzw)": (lambda: animation.to_gif(da, tmp / "xl.gif", compression="lzw", **opts), pn_gif if have_playnano else None, "xl.gif", "pn.gif"),
        "MP4 (H.264)": (lambda: animation.to_video(da, tmp / "x.mp4", **opts), pn_mp4 if have_playnano else None, "x.mp4", "pn.mp4"),
        "MP4 (H.264 q4)": (lambda: animation.to_video(da, tmp / "x4.mp4", quality=4, **opts), pn_mp4 if have_playnano else None, "x4.mp4", "pn.mp4"),
        "PNG sequence": (lambda: animation.to_frames(da, tmp / "x_frames", **fopts), pn_seq if have_playnano else None, "x_frames", "pn_frames"),
    }
    results = {}
    for name, (xafm_fn, pn_fn, xout, pnout) in pairs.items():
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        cand = {"xafm": xafm_fn}
        if pn_fn is not None:
            cand["playNano"] = pn_fn
        if name == "MP4 (H.264)":
            cand["encoder alone"] = encoder_alone(da, tmp)
        best = interleaved_best(cand, repeat)
        row = {"xafm_s": best["xafm"], "xafm_bytes": size_of(tmp / xout)}
        if "playNano" in best:
            row.update(playnano_s=best["playNano"], playnano_bytes=size_of(tmp / pnout), speedup=best["playNano"] / best["xafm"])
        if "encoder alone" in best:
            row["encoder_alone_s"] = best["encoder alone"]
            if "playNano" in best:
                row["encoder_alone_speedup"] = best["playNano"] / best["encoder alone"]
        results[name] = row
        print(f"  {name}: {row}", flush=True)
    return results


def encoder_alone(da: Any, tmp: Path) -> Any:
    """xafm's own ffmpeg command and pipe fed frames rendered beforehand (z-scale and
    rendering excluded): the floor of the MP4 export on this machine."""
    from xafm.animation import video
    from xafm.render import FrameRenderer

    r = FrameRenderer(da, pad_to=2, action="to_video")
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
    gif = animation.to_gif(da, outdir / "example.gif", fps=6, scale_bar_nm=10, upscale=2, compression="lzw", overwrite=True)

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory", action="store_true", help="also run the streaming-memory check")
    ap.add_argument("--docs-images", action="store_true", help="regenerate docs/images/ and exit")
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    ap.add_argument("--only", nargs="*", default=None, help="run only exports whose name contains one of these (gif, mp4, png)")
    args = ap.parse_args(argv)
    if args.docs_images:
        for p in docs_images(ROOT / "docs" / "images"):
            print(f"{p}: {p.stat().st_size / 1e3:.0f} kB")
        return 0
    print(machine())
    with tempfile.TemporaryDirectory(prefix="xafm-bench-anim-") as d:
        tmp = Path(d)
        results: dict[str, Any] = {"machine": machine(), "frames": args.frames, "size": args.size}
        results["exports"] = run_compare(args.frames, args.size, args.repeat, tmp, args.only)
        print(f"\n{args.frames} frames of {args.size}x{args.size} (best of {args.repeat}):")
        print(f"{'export':<14} {'xafm s':>8} {'playNano s':>11} {'speed-up':>9} {'xafm MB':>8} {'playNano MB':>12}")
        for name, row in results["exports"].items():
            pn = row.get("playnano_s")
            print(
                f"{name:<14} {row['xafm_s']:8.3f} {pn if pn is not None else float('nan'):11.3f} "
                f"{row.get('speedup', float('nan')):8.1f}x {row['xafm_bytes'] / 1e6:8.2f} {row.get('playnano_bytes', 0) / 1e6:12.2f}"
            )
            if "encoder_alone_s" in row:
                print(
                    f"{'  x264 alone':<14} {row['encoder_alone_s']:8.3f} {pn if pn is not None else float('nan'):11.3f} "
                    f"{row.get('encoder_alone_speedup', float('nan')):8.1f}x   (xafm's ffmpeg command fed frames rendered beforehand)"
                )
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
