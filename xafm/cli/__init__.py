"""The ``xafm`` command line: ``demo``, ``info``, ``process`` (a pipeline, then exports),
``convert`` (exports only) and ``index`` (one row per file of a folder, headers only)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def _cmd_demo(args: argparse.Namespace) -> int:
    from .. import demo

    print(f"xafm demo: synthetic HS-AFM video ({args.frames} frames of {args.size}x{args.size}) -> {args.outdir}")
    rows = demo.run(args.outdir, n_frames=args.frames, size=args.size)
    print(demo.format_table(rows))
    return 0 if all(r["ok"] is True or r["ok"] == "written (no reader)" for r in rows) else 1


def describe(da: Any, path: str = "") -> str:
    """What ``xafm info`` prints: a few lines anyone can read."""
    from ..core import conventions, model

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
    from ..core import provenance

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

    from . import remote

    remote.remember(args, args.file)

    da = xafm.open(args.file, chunks={}, channel=args.channel)
    print(describe(da, args.file))
    try:
        channels = xafm.channels(args.file)
        print(f"channels:    {', '.join(channels)}")
    except Exception as exc:  # listing channels is a courtesy; the file was readable
        print(f"channels:    unknown ({exc})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import convert, index, process, remote
    from .messages import Parser

    p = Parser(prog="xafm", description="AFM stacks and HS-AFM videos as labeled arrays")
    p.add_argument("--version", action="version", version=f"xafm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    d = sub.add_parser("demo", help="build a synthetic HS-AFM video, level it, export every format, read back")
    d.add_argument("outdir", nargs="?", default="xafm-demo")
    d.add_argument("--frames", type=int, default=200)
    d.add_argument("--size", type=int, default=128)
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser("info", help="describe any readable file (a path or a URL)")
    i.add_argument("file")
    i.add_argument("--channel", default=None)
    remote.add_arguments(i)
    i.set_defaults(func=_cmd_info)

    process.add_parser(sub)
    convert.add_parser(sub)
    index.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors are one ``xafm: error: ...`` line and exit status 2,
    warnings one ``warning: ...`` line each."""
    from ..exceptions import XafmError
    from . import messages

    args = build_parser().parse_args(argv)
    with messages.one_line_warnings():
        try:
            return int(args.func(args) or 0)
        except XafmError as exc:
            return messages.error(exc)
        except OSError as exc:  # a disk full, a folder that cannot be made: the system's words
            return messages.error(f"{str(exc.filename) + ': ' if exc.filename else ''}{exc.strerror or exc}")
        except KeyboardInterrupt:
            print("xafm: interrupted", file=sys.stderr)
            return 130


