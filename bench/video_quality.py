"""Benchmark: MP4 quality per byte, to choose ``to_video``'s default quality (CRF).

For each stack the exact frames xafm renders before encoding (the RGB colours and the
yuv420p planes xafm sends to ffmpeg, z-scale ``"auto"``, scale bar, timestamps) are
rendered once; then each encoder setting encodes them through xafm's own ffmpeg command
and pipe (``video.video_command``, ``video._FfmpegInput``, without the provenance input),
the file is decoded back to RGB with ffmpeg (as imageio does) and compared with the
rendered RGB frames:

* ``PSNR``: over the whole clip (the mean squared error of every pixel and channel);
  ``worst``: the PSNR of the worst frame;
* ``SSIM``: of the luma (BT.601 weights of the RGB), Gaussian window (sigma 1.5, Wang et
  al. 2004, as ``skimage.metrics.structural_similarity(gaussian_weights=True,
  use_sample_covariance=False)``), the mean over up to 16 evenly spaced frames;
  implemented here with scipy, so the benchmark needs no extra package (checked against
  scikit-image when it is installed);
* ``PSNR enc``: against the lossless encode (``-qp 0``) of the same yuv420p frames, i.e.
  the encoder's own loss, without what 4:2:0 chroma costs, which no yuv420p setting
  avoids (the ``lossless`` row gives that ceiling);
* bytes, and the encode time (best of ``--repeat`` interleaved rounds, frames rendered
  beforehand: the encoder alone).

Stacks, each levelled as users export them (``remove_plane().align_rows()``):

* ``asd``: the real ``asd_sample_0.asd`` (32 frames of 200 x 200 at 0.5 nm/px), rendered
  at 400 x 400 (xafm's automatic upscale), 20 nm bar;
* ``asd512``: real-derived 512 x 512 frames: each levelled frame tiled 3 x 3 and cut to
  512 x 512 (the real noise and features, not smoothed by upsampling), 32 frames, 50 nm bar;
* ``synthetic``: ``bench.animation.test_stack`` (xafm's synthetic HS-AFM video, 100 noisy
  frames of 512 x 512 at 0.25 nm/px), 100 nm bar.

playNano's default MP4 (``create_video_with_scale_and_timestamp``: OpenCV, MPEG-4 part 2)
is the reference point. playNano is GPL, so it runs only in its own venv as a separate
process (``--playnano-python``, default ``/work/bench-venv/bin/python``): it is given the
same levelled stack (float64), pixel sizes, times, bar, 5 fps and ``zmin=zmax="auto"``,
and OpenCV's ``VideoWriter.write`` is wrapped to keep the frames playNano renders, so its
file is measured against its own rendered frames the same way. ``mpeg4 @ playNano bpp``
encodes xafm's frames with ffmpeg's MPEG-4 part 2 encoder at playNano's bits per pixel:
the same codec and rate on the same content.

Usage (from the project root, xafm's venv)::

    python -m bench.video_quality [--repeat 3] [--stacks asd asd512 synthetic] [--json out.json] [--plot rd.png]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_ASD = ROOT.parent / "shared" / "data" / "afm" / "asd_sample_0.asd"
PLAYNANO_PYTHON = Path("/work/bench-venv/bin/python")
FPS = 5.0
#: xafm's default CRF (quality 5 -> CRF 25)
DEFAULT_CRF = 25

#: (label, codec, crf or None, preset, extra ffmpeg options); CRF rows go through
#: ``quality = (35 - crf) / 2``, xafm's own mapping
CRFS = (15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35)
SETTINGS: list[tuple[str, str, int | None, str | None, list[str]]] = [
    *((f"x264 ultrafast crf {c}", "libx264", c, None, []) for c in CRFS),
    *((f"x264 ultrafast crf {c} tune grain", "libx264", c, None, ["-tune", "grain"]) for c in (23, 27, 31)),
    *((f"x264 ultrafast crf {c} tune stillimage", "libx264", c, None, ["-tune", "stillimage"]) for c in (23, 27, 31)),
    *((f"x264 veryfast crf {c}", "libx264", c, "veryfast", []) for c in (23, 27, 31)),
    *((f"x264 veryfast crf {c} tune grain", "libx264", c, "veryfast", ["-tune", "grain"]) for c in (23, 27, 31)),
    ("lossless (yuv420p ceiling)", "libx264", None, None, ["-qp", "0"]),
]


# -- metrics -------------------------------------------------------------------------


def psnr(mse: float) -> float:
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM of two grey images: Gaussian window sigma 1.5 truncated at 3.5 sigma,
    population covariances, K1 0.01, K2 0.03, the border of half a window left out (what
    scikit-image does with ``gaussian_weights=True, use_sample_covariance=False``)."""
    from scipy.ndimage import gaussian_filter

    a, b = a.astype(np.float64), b.astype(np.float64)
    f = lambda x: gaussian_filter(x, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    pad = (2 * int(3.5 * 1.5 + 0.5) + 1 - 1) // 2  # skimage crops (win_size - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def ssim_frames(n: int, k: int = 16) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def measure(decoded: np.ndarray, ref: np.ndarray, ref_lossless: np.ndarray | None) -> dict[str, float]:
    if decoded.shape != ref.shape:
        raise ValueError(f"decoded {decoded.shape} against rendered {ref.shape}")
    d = decoded.astype(np.int16) - ref.astype(np.int16)
    per_frame = (d.astype(np.float64) ** 2).reshape(len(d), -1).mean(1)
    out = {"psnr": psnr(float(per_frame.mean())), "psnr_worst": psnr(float(per_frame.max()))}
    ys = [ssim(luma(decoded[i]), luma(ref[i])) for i in ssim_frames(len(ref))]
    out["ssim"] = float(np.mean(ys))
    if ref_lossless is not None:
        e = decoded.astype(np.int16) - ref_lossless.astype(np.int16)
        out["psnr_enc"] = psnr(float((e.astype(np.float64) ** 2).mean()))
    return out


def decode_rgb(path: Path) -> np.ndarray:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen])


# -- stacks ----------------------------------------------------------------------------


def stacks(which: list[str], asd: Path) -> dict[str, tuple[Any, float, str]]:
    import xafm
    from bench.animation import real_stack, test_stack

    out: dict[str, tuple[Any, float, str]] = {}
    real = real_stack(asd) if {"asd", "asd512"} & set(which) else None
    for name in which:
        if name == "asd":
            out[name] = (real, 20.0, f"{asd.name} (real, levelled): {real.shape[0]} frames of {real.shape[1]}x{real.shape[2]}, rendered 2x")
        elif name == "asd512":
            tiled = np.tile(real.values, (1, 3, 3))[:, :512, :512]
            da = xafm.stack(np.ascontiguousarray(tiled), pixel_size_nm=float(real.afm.pixel_size_nm), times=real["time"].values)
            out[name] = (da, 50.0, f"real-derived: {asd.name} levelled, tiled 3x3 to 512x512, {da.shape[0]} frames")
        elif name == "synthetic":
            da = test_stack(100, 512)
            out[name] = (da, 100.0, "synthetic: 100 noisy frames of 512x512 (bench.animation.test_stack)")
    return out


def rendered(da: Any, bar_nm: float) -> tuple[tuple[int, int], list[np.ndarray], np.ndarray]:
    """(width, height), the yuv420p frames xafm pipes to ffmpeg, and their RGB colours."""
    from xafm.render import FrameRenderer, RenderOptions

    r = FrameRenderer(da, RenderOptions(scale_bar_nm=bar_nm), pad_to=2, action="to_video")
    idx = [r.indices(f, i) for i, f in r.frames()]
    return r.size, [r.yuv420(x) for x in idx], np.stack([r.rgb(x) for x in idx])


def check_default_crf() -> None:
    from xafm.animation import video

    if round(35 - 2 * video.DEFAULT_QUALITY) != DEFAULT_CRF:
        raise AssertionError(f"xafm's default is CRF {round(35 - 2 * video.DEFAULT_QUALITY)}, this script marks {DEFAULT_CRF}")


def encoder(out: Path, size: tuple[int, int], frames: list[np.ndarray], codec: str, crf: int | None, preset: str | None, extra: list[str]) -> Any:
    from xafm.animation import video

    quality = None if crf is None else (35 - crf) / 2
    command, own_yuv = video.video_command(out, size, fps=FPS, codec=codec, quality=quality, preset=preset)
    assert own_yuv  # yuv420p for x264 and mpeg4: the same input for every setting
    if crf is not None and codec == "libx264":
        assert command[command.index("-crf") + 1] == str(crf)

    def run() -> None:
        with video._FfmpegInput(out, [*command, *extra, os.fspath(out)]) as ffmpeg:
            for f in frames:
                ffmpeg.write(f)
            ffmpeg.finish()

    return run


# -- playNano, in its own venv ------------------------------------------------------------

PLAYNANO_SCRIPT = r"""
import json, logging, sys, time, warnings
import numpy as np
import cv2
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
src, out, frames_out = sys.argv[1:4]
args = json.loads(sys.argv[4])
data = np.load(src)
stack, times = data["stack"], [float(t) for t in data["times"]]
px = [float(data["px"])] * stack.shape[0]
kept = []
Writer = cv2.VideoWriter
class Keeping:  # playNano's own writer, keeping what it is given
    def __init__(self, *a, **k):
        self._w = Writer(*a, **k)
    def write(self, frame):
        kept.append(np.array(frame, copy=True))
        return self._w.write(frame)
    def __getattr__(self, name):
        return getattr(self._w, name)
cv2.VideoWriter = Keeping
from playnano.io.video_export import create_video_with_scale_and_timestamp
t0 = time.perf_counter()
create_video_with_scale_and_timestamp(stack, px, times, args["bar_nm"], output_path=out, fps=args["fps"], zmin="auto", zmax="auto")
dt = time.perf_counter() - t0
rgb = np.stack([f[..., ::-1] for f in kept])  # OpenCV frames are BGR
np.save(frames_out, rgb)
import playnano
print(json.dumps({"seconds": dt, "frames": len(kept), "shape": list(rgb.shape), "version": getattr(playnano, "__version__", "?"), "cv2": cv2.__version__}))
"""


def run_playnano(da: Any, bar_nm: float, tmp: Path, python: Path) -> dict[str, Any] | None:
    if not python.exists():
        print(f"  playNano: {python} not found, skipped", flush=True)
        return None
    src = tmp / "pn_in.npz"
    np.savez(src, stack=np.ascontiguousarray(da.values, dtype=np.float64), times=np.asarray(da["time"].values, dtype=float), px=float(da.afm.pixel_size_nm))
    out, frames_out = tmp / "pn.mp4", tmp / "pn_frames.npy"
    proc = subprocess.run(
        [str(python), "-c", PLAYNANO_SCRIPT, str(src), str(out), str(frames_out), json.dumps({"bar_nm": bar_nm, "fps": FPS})],
        capture_output=True, text=True, cwd=tmp,
    )  # fmt: skip
    if proc.returncode:
        print(f"  playNano failed: {proc.stderr[-1500:]}", flush=True)
        return None
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = np.load(frames_out)
    decoded = decode_rgb(out)
    row = {"bytes": out.stat().st_size, "whole_export_s": info["seconds"], "size": [ref.shape[2], ref.shape[1]], "frames": ref.shape[0], **measure(decoded, ref, None)}
    row["bpp"] = row["bytes"] * 8 / (ref.shape[0] * ref.shape[1] * ref.shape[2])
    row["versions"] = {"playnano": info["version"], "cv2": info["cv2"]}
    return row


def codec_of(path: Path) -> str:
    import imageio_ffmpeg

    err = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    line = next((ln for ln in err.splitlines() if "Video:" in ln), "")
    return line.split("Video:")[-1].strip()


# -- the run -------------------------------------------------------------------------------


def run_stack(da: Any, bar_nm: float, repeat: int, tmp: Path, pn_python: Path) -> dict[str, Any]:
    size, yuv, rgb = rendered(da, bar_nm)
    n, pixels = len(yuv), size[0] * size[1]
    pn = run_playnano(da, bar_nm, tmp, pn_python)
    settings = list(SETTINGS)
    if pn is not None:  # the same codec and rate as playNano, on xafm's frames
        kbps = pn["bpp"] * pixels * FPS / 1000
        settings.append(("mpeg4 @ playNano bpp", "mpeg4", None, None, ["-b:v", f"{kbps:.0f}k"]))
    files = {label: tmp / f"v{k}.mp4" for k, (label, *_) in enumerate(settings)}
    runs = {label: encoder(files[label], size, yuv, codec, crf, preset, extra) for (label, codec, crf, preset, extra) in settings}
    best = {label: float("inf") for label in runs}
    for _ in range(repeat):  # interleaved: load from other processes hits every setting alike
        for label, fn in runs.items():
            time.sleep(0.05)
            t0 = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - t0)
    lossless = decode_rgb(files["lossless (yuv420p ceiling)"])
    rows: dict[str, Any] = {}
    for label, *_ in settings:
        nbytes = files[label].stat().st_size
        row = {"bytes": nbytes, "bpp": nbytes * 8 / (n * pixels), "encode_s": best[label], **measure(decode_rgb(files[label]), rgb, lossless)}
        rows[label] = row
        print(f"  {label:<38} {row['bytes'] / 1e6:7.3f} MB  PSNR {row['psnr']:6.2f} dB (worst {row['psnr_worst']:6.2f}, enc {row['psnr_enc']:6.2f})  SSIM {row['ssim']:.4f}  {row['encode_s']:.3f} s", flush=True)
    if pn is not None:
        rows["playNano default MP4"] = pn
        print(f"  {'playNano default MP4':<38} {pn['bytes'] / 1e6:7.3f} MB  PSNR {pn['psnr']:6.2f} dB (worst {pn['psnr_worst']:6.2f})  SSIM {pn['ssim']:.4f}  (whole export {pn['whole_export_s']:.3f} s)", flush=True)
    check_ssim(rgb, decode_rgb(files["x264 ultrafast crf 23"]))
    return {"size": list(size), "frames": n, "codec_default": codec_of(files["x264 ultrafast crf 23"]), "rows": rows}


def check_ssim(ref: np.ndarray, decoded: np.ndarray) -> None:
    """This SSIM against scikit-image's, when installed."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return
    a, b = luma(decoded[0]), luma(ref[0])
    theirs = structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    ours = ssim(a, b)
    if abs(theirs - ours) > 1e-6:
        raise AssertionError(f"SSIM {ours} here against scikit-image's {theirs}")


def equal_quality(rows: dict[str, Any], target: dict[str, float], key: str) -> str | None:
    """The smallest x264 ultrafast CRF row at least as good as ``target`` by ``key``."""
    ok = [(r["bytes"], label) for label, r in rows.items() if label.startswith("x264 ultrafast crf") and "tune" not in label and r[key] >= target[key]]
    return min(ok)[1] if ok else None


def print_table(title: str, entry: dict[str, Any]) -> None:
    rows = entry["rows"]
    print(f"\n{title} ({entry['size'][0]}x{entry['size'][1]}, {entry['frames']} frames):")
    print(f"{'setting':<38} {'MB':>7} {'bits/px':>8} {'PSNR dB':>8} {'worst':>6} {'enc dB':>7} {'SSIM':>7} {'encode s':>9}")
    for label, r in rows.items():
        enc = f"{r['psnr_enc']:7.2f}" if "psnr_enc" in r else " " * 7
        t = f"{r['encode_s']:9.3f}" if "encode_s" in r else f"{r.get('whole_export_s', float('nan')):8.3f}*"
        print(f"{label:<38} {r['bytes'] / 1e6:7.3f} {r['bpp']:8.3f} {r['psnr']:8.2f} {r['psnr_worst']:6.2f} {enc} {r['ssim']:7.4f} {t}")
    pn = rows.get("playNano default MP4")
    if pn is not None:
        for key in ("psnr", "ssim"):
            label = equal_quality(rows, pn, key)
            if label:
                print(f"  smallest x264 ultrafast at playNano's {key.upper()} ({pn[key]:.4g}): {label}, {rows[label]['bytes'] / pn['bytes']:.2f}x its bytes, {rows[label]['bpp'] / pn['bpp']:.2f}x its bits per pixel")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, entry in results["stacks"].items():
        rows = entry["rows"]
        for k, (metric, ax) in enumerate(zip(("psnr", "ssim"), axes)):
            for series, style in (("x264 ultrafast crf", "o-"), ("x264 veryfast crf", "s--")):
                pts = sorted((r["bpp"], r[metric]) for label, r in rows.items() if label.startswith(series) and "tune" not in label)
                ax.plot(*zip(*pts), style, ms=3, label=f"{name}: {series.replace(' crf', '')}" if k == 0 else None)
            default = rows.get(f"x264 ultrafast crf {DEFAULT_CRF}")
            if default is not None:
                ax.plot(default["bpp"], default[metric], "o", ms=10, mfc="none", mec="red", label="xafm default" if k == 0 and name == next(iter(results["stacks"])) else None)
            if "playNano default MP4" in rows:
                r = rows["playNano default MP4"]
                ax.plot(r["bpp"], r[metric], "k*", ms=9)
                ax.annotate(f"playNano ({name})", (r["bpp"], r[metric]), fontsize=7, xytext=(4, -10), textcoords="offset points")
    axes[0].set_ylabel("PSNR against the rendered RGB frames (dB)")
    axes[1].set_ylabel("SSIM (luma)")
    for ax in axes:
        ax.set_xlabel("bits per pixel per frame")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    from bench.animation import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--asd", type=Path, default=REAL_ASD)
    ap.add_argument("--stacks", nargs="*", default=["asd", "asd512", "synthetic"], choices=["asd", "asd512", "synthetic"])
    ap.add_argument("--playnano-python", type=Path, default=PLAYNANO_PYTHON, help="a Python with playNano (its own venv)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None, help="write the rate-distortion plot here")
    ap.add_argument("--from-json", type=Path, default=None, help="print and plot the results of an earlier --json run, encoding nothing")
    args = ap.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        print(results["machine"])
        for entry in results["stacks"].values():
            print_table(entry["title"], entry)
        if args.plot:
            plot(results, args.plot)
        return 0
    check_default_crf()
    results: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "stacks": {}}
    print(results["machine"], flush=True)
    with tempfile.TemporaryDirectory(prefix="xafm-bench-vq-") as d:
        tmp = Path(d)
        for name, (da, bar, title) in stacks(args.stacks, args.asd).items():
            print(f"\n{title}, scale bar {bar:g} nm", flush=True)
            entry = run_stack(da, bar, args.repeat, tmp, args.playnano_python)
            entry["title"] = title
            results["stacks"][name] = entry
    for entry in results["stacks"].values():
        print_table(entry["title"], entry)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
