"""The ``xafm`` command line: ``demo``, ``info`` and ``convert``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    print(f"xafm demo: synthetic HS-AFM video ({args.frames} frames of {args.size}x{args.size}) -> {args.outdir}")
    rows = demo.run(args.outdir, n_frames=args.frames, size=args.size)
    print(demo.format_table(rows))
    return 0 if all(r["ok"] is True or r["ok"] == "written (no reader)" for r in rows) else 1


def describe(da: Any, path: str = "") -> str:
    """What ``xafm info`` prints: a few lines anyone can read."""
    from .core import conventions, model

    lines = [f"file:        {path}"] if path else []
    lines.append(f"dims:        {dict(da.sizes)}")
    lines.append(f"dtype:       {da.dtype}")
    lines.append(f"channel:     {da.attrs.get('channel', da.name)}  (units: {da.attrs.get('units', '?')})")
    if "time" in da.dims and set(conventions.DIMS) <= set(da.dims):
        try:
            dy, dx = model.pixel_size_nm(da.transpose(*conventions.DIMS, ...)) if da.dims == conventions.DIMS else (
                float(da.attrs.get(conventions.PIXEL_SIZE_Y_ATTR, da.attrs.get(conventions.PIXEL_SIZE_ATTR, np.nan))),
                float(da.attrs.get(conventions.PIXEL_SIZE_ATTR, np.nan)),
            )
            lines.append(f"pixel size:  {dx:g} nm" + (f" (y: {dy:g} nm)" if dy != dx else ""))
        except Exception as exc:  # a stack whose coordinates are odd still gets described
            lines.append(f"pixel size:  unknown ({exc})")
    if "time" in da.coords:
        t = np.asarray(da["time"].values, dtype=float)
        if t.size > 1:
            lines.append(f"frame times: {t.size} frames, {t[0]:g} .. {t[-1]:g} s (median step {np.median(np.diff(t)):g} s)")
        elif t.size:
            lines.append(f"frame times: 1 frame at {t[0]:g} s")
    meta = model.frame_metadata_names(da)
    if meta:
        lines.append(f"per-frame:   {', '.join(meta)}")
    lines.append(f"masks:       {', '.join(model.masks(da)) or '-'}")
    lines.append(f"layers:      {', '.join(model.layers(da)) or '-'}")
    acq = model.acquisition(da)
    if acq:
        keys = list(acq)[:12]
        lines.append(f"acquisition: {', '.join(keys)}{' ...' if len(acq) > len(keys) else ''}")
    from .core import provenance

    recs = provenance.records(da)
    lines.append(f"provenance:  {len(recs)} records")
    for r in recs:
        what = r.get("name") or r.get("format") or r.get("function") or ""
        where = r.get("path", "")
        params = r.get("params")
        extra = f" {params}" if params else ""
        lines.append(f"  - {r.get('type', '?'):<7} {what}{extra} {where} {r.get('timestamp', '')}".rstrip())
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    import xafm

    da = xafm.open(args.file, chunks={}, channel=args.channel)
    print(describe(da, args.file))
    try:
        channels = xafm.channels(args.file)
        print(f"channels:    {', '.join(channels)}")
    except Exception as exc:  # listing channels is a courtesy; the file was readable
        print(f"channels:    unknown ({exc})")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    import xafm

    from . import animation, registry
    from .exceptions import FormatError
    from .render import RenderOptions

    for f in args.export:
        registry.get(f, for_writing=True)
    if not (args.export or args.make_gif or args.make_video or args.make_sequence):
        raise FormatError("nothing to do: give --export FMT ... and/or --make-gif / --make-video / --make-sequence")
    # every option checked before anything is read or written (a bad --cmap fails first)
    render = RenderOptions(
        cmap=args.cmap, zmin=args.zmin, zmax=args.zmax, scale_bar_nm=args.scale_bar_nm, timestamps=args.draw_ts, scale_bar=args.draw_scale,
    )
    # the preferred chunks: whole frames, ~32 MiB a chunk, so no file is ever loaded whole
    da = xafm.open(args.input, chunks={}, channel=args.channel)
    name = args.output_name or Path(args.input).name.split(".")[0]
    out = Path(args.output_folder)
    written = da.afm.export(out, name, args.export, raw=args.raw, overwrite=args.overwrite) if args.export else {}
    written.update(
        animation.export_animations(
            da, out, name, gif=args.make_gif, video=args.make_video, sequence=args.make_sequence,
            overwrite=args.overwrite, fps=args.fps, render=render,
        )
    )
    for fmt, path in written.items():
        print(f"{fmt}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__, animation, registry
    from .render import RenderOptions

    p = argparse.ArgumentParser(prog="xafm", description="AFM stacks and HS-AFM videos as labeled arrays")
    p.add_argument("--version", action="version", version=f"xafm {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="build a synthetic HS-AFM video, level it, export every format, read back")
    d.add_argument("outdir", nargs="?", default="xafm-demo")
    d.add_argument("--frames", type=int, default=200)
    d.add_argument("--size", type=int, default=128)
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser("info", help="describe any readable file")
    i.add_argument("file")
    i.add_argument("--channel", default=None)
    i.set_defaults(func=_cmd_info)

    c = sub.add_parser("convert", help="convert a file to other formats")
    c.add_argument("input")
    c.add_argument("--export", nargs="+", default=[], metavar="FMT", help=f"formats: {', '.join(registry.writable())}")
    c.add_argument("--output-folder", default="output")
    c.add_argument("--output-name", default=None)
    c.add_argument("--raw", action="store_true", help="write the raw layer instead of the processed data")
    c.add_argument("--channel", default=None)
    c.add_argument("--overwrite", action="store_true")

    # playNano's flag names; their defaults are RenderOptions' (one RenderOptions is made from them)
    render_defaults = RenderOptions()
    a = c.add_argument_group("animations (playNano's flags)")
    a.add_argument("--make-gif", action="store_true", help="write NAME.gif")
    a.add_argument("--make-video", nargs="?", const="mp4", default=None, choices=animation.VIDEO_FORMATS, help=f"write NAME.mp4 (or {', '.join(animation.VIDEO_FORMATS[1:])})")
    a.add_argument("--make-sequence", nargs="?", const="png", default=None, choices=["png", "jpg"], help="write NAME_frames/ with one image per frame")
    a.add_argument("--fps", type=float, default=5.0)
    a.add_argument("--cmap", default=render_defaults.cmap, help="any matplotlib colormap name (xafm_afm, xafm_afm_uniform, viridis, ...)")
    a.add_argument("--zmin", type=animation.parse_zlimit, default=render_defaults.zmin, help="auto (1st percentile), none (minimum) or a number")
    a.add_argument("--zmax", type=animation.parse_zlimit, default=render_defaults.zmax, help="auto (99th percentile), none (maximum) or a number")
    a.add_argument("--scale-bar-nm", type=float, default=render_defaults.scale_bar_nm)
    a.add_argument("--draw-ts", action=argparse.BooleanOptionalAction, default=render_defaults.timestamps, help="draw the frame time")
    a.add_argument("--draw-scale", action=argparse.BooleanOptionalAction, default=render_defaults.scale_bar, help="draw the scale bar")
    c.set_defaults(func=_cmd_convert)
    return p


def main(argv: list[str] | None = None) -> int:
    from .exceptions import XafmError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XafmError as exc:
        print(f"xafm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
