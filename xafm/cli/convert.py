"""``xafm convert``: another format without processing; and the output flags that
``convert`` and ``process`` share (playNano's names)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import remote, spellings


def add_output_arguments(c: argparse.ArgumentParser) -> None:
    """The flags of the outputs: bundles, animations and how frames are drawn."""
    from .. import animation, registry
    from ..animation.video import DEFAULT_QUALITY
    from ..render import RenderOptions

    c.add_argument("--export", nargs="+", default=[], metavar="FMT",
                   help=f"formats, comma or space separated: {', '.join(registry.writable())} (hdf5, tiff too)")
    c.add_argument("--output-folder", default="output", help="a folder, or a URL prefix (s3://bucket/run1) reached with --storage-options")
    c.add_argument("--output-name", default=None, help="base name of the outputs (a suffix such as .h5 is dropped)")
    c.add_argument("--raw", action="store_true", help="export the raw layer (the data as read) instead of the processed data")
    c.add_argument("--channel", default=None)
    c.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    c.add_argument("--progress", action="store_true", help="show progress while writing")
    c.add_argument("--no-fsync", dest="fsync", action="store_false",
                   help="do not wait for the outputs to reach the disk (scratch output: faster, but a power loss can lose them)")

    # playNano's flag names; their defaults are RenderOptions' (one RenderOptions is made from them)
    render_defaults = RenderOptions()
    a = c.add_argument_group("animations (playNano's flags)")
    a.add_argument("--make-gif", action="store_true", help="write NAME.gif")
    a.add_argument("--make-video", nargs="?", const="mp4", default=None, metavar="FMT",
                   help=f"write NAME.mp4 (or {', '.join(animation.VIDEO_FORMATS[1:])}; comma separated for several)")
    a.add_argument("--make-sequence", nargs="?", const="png", default=None, choices=["png", "jpg"], help="write one image per frame")
    a.add_argument("--fps", type=float, default=5.0)
    a.add_argument("--gif-compression", default="auto", choices=["auto", "fast", "lzw"], help="GIF coding (auto: LZW where it pays)")
    a.add_argument("--video-quality", type=spellings.video_quality, default=DEFAULT_QUALITY, metavar="Q",
                   help=f"video quality, 0 (smallest file) to 10 (best); H.264 CRF 35 - 2Q (default {DEFAULT_QUALITY:g})")
    a.add_argument("--cmap", default=render_defaults.cmap,
                   help="any matplotlib colormap (xafm_afm, xafm_afm_uniform, viridis, ...); playNano's afm_brown, classic_afm, playnano_gold too")
    a.add_argument("--zmin", type=spellings.z_limit, default=render_defaults.zmin, help="auto (1st percentile), none (minimum) or a number")
    a.add_argument("--zmax", type=spellings.z_limit, default=render_defaults.zmax, help="auto (99th percentile), none (maximum) or a number")
    a.add_argument("--scale-bar-nm", type=spellings.scale_bar, default="auto",
                   help="auto (a round length of about a fifth of the width; the default), none or 0 (no bar), or a length in nm")
    a.add_argument("--draw-ts", action=argparse.BooleanOptionalAction, default=render_defaults.timestamps, help="draw the frame time")
    a.add_argument("--draw-scale", action=argparse.BooleanOptionalAction, default=render_defaults.scale_bar, help="draw the scale bar")
    a.add_argument("--colorbar", action=argparse.BooleanOptionalAction, default=render_defaults.colorbar,
                   help="add a height legend (colour bar with the z-limits) in a margin right of the frames")


def video_formats(value: str | None) -> list[str]:
    """``--make-video mp4,avi`` -> ``["mp4", "avi"]`` (checked)."""
    from .. import animation
    from ..exceptions import FormatError

    if value is None:
        return []
    out = [v.strip().lower().lstrip(".") for v in value.split(",") if v.strip()]
    for v in out:
        if v not in animation.VIDEO_FORMATS:
            raise FormatError(f"--make-video: video format must be one of {', '.join(animation.VIDEO_FORMATS)}, got {v!r}")
    return out


def render_options(args: argparse.Namespace) -> Any:
    """One checked RenderOptions from the flags (a bad --cmap fails before anything is read)."""
    from ..render import RenderOptions

    bar = args.scale_bar_nm
    return RenderOptions(
        cmap=spellings.colormap_name(args.cmap), zmin=args.zmin, zmax=args.zmax, scale_bar_nm="auto" if bar is None else bar,
        timestamps=args.draw_ts, scale_bar=args.draw_scale and bar is not None, colorbar=args.colorbar,
    )


def checked_formats(args: argparse.Namespace) -> list[str]:
    """The --export formats, each known to the registry as writable."""
    from .. import registry

    formats = spellings.export_formats(args.export)
    for f in formats:
        registry.get(f, for_writing=True)
    return formats


@contextlib.contextmanager
def progress(on: bool) -> Iterator[None]:
    """dask's progress bar around the bundle writers, when asked for."""
    if not on:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(minimum=1.0):
        yield


def output_folder(args: argparse.Namespace) -> Path | str:
    """``--output-folder``: a local folder, or a URL prefix (with ``--storage-options``
    remembered for it, and for a URL input, as fsspec options)."""
    from ..core import remote_output

    remote.remember(args, getattr(args, "input", None), args.output_folder)
    return remote_output.local_or_url(args.output_folder)


def member(out: Path | str, name: str) -> Path | str:
    """``out/name`` for a folder or a URL prefix."""
    from ..core import sources

    return sources.join(out, name) if isinstance(out, str) else out / name


def write_animations(da: Any, out: Path | str, name: str, args: argparse.Namespace, render: Any, *, sequence_folder: Path | str | None = None,
                     sequence_prefix: str = "frame") -> dict[str, Path | str]:  # fmt: skip
    """GIF, videos and frame images as asked, all drawn with ``render`` (through the
    registry, so that a URL is written locally and uploaded once complete)."""
    from .. import registry

    common = {"overwrite": args.overwrite, "progress": args.progress, "render": render, "fsync": args.fsync}
    written: dict[str, Path | str] = {}
    if args.make_gif:
        written["gif"] = registry.write("gif", da, member(out, f"{name}.gif"), fps=args.fps, compression=args.gif_compression, **common)
    for ext in video_formats(args.make_video):
        written[ext] = registry.write(ext, da, member(out, f"{name}.{ext}"), fps=args.fps, quality=args.video_quality, **common)
    if args.make_sequence:
        folder = sequence_folder or member(out, f"{name}_frames")
        written["frames"] = registry.write("png", da, folder, fmt=args.make_sequence, prefix=sequence_prefix, **common)
    return written


def run(args: argparse.Namespace) -> int:
    import xafm

    from ..exceptions import FormatError

    formats = checked_formats(args)
    if not (formats or args.make_gif or args.make_video or args.make_sequence):
        raise FormatError("nothing to do: give --export FMT ... and/or --make-gif / --make-video / --make-sequence")
    render = render_options(args)  # every option checked before anything is read or written
    video_formats(args.make_video)
    # the preferred chunks: whole frames, ~32 MiB a chunk, so no file is ever loaded whole
    out = output_folder(args)  # before the open: remembers --storage-options for a URL input
    da = xafm.open(args.input, chunks={}, channel=args.channel)
    name = spellings.output_name(args.output_name, args.input) if args.output_name else Path(args.input).name.split(".")[0]
    with progress(args.progress):
        written = da.afm.export(out, name, formats, raw=args.raw, overwrite=args.overwrite, fsync=args.fsync) if formats else {}
    written.update(write_animations(da, out, name, args, render))
    for fmt, path in written.items():
        print(f"{fmt}: {path}")
    return 0


def add_parser(sub: Any) -> None:
    c = sub.add_parser("convert", help="convert a file to other formats, without processing")
    c.add_argument("input", help="a file or a URL (s3://, gs://, https://)")
    add_output_arguments(c)
    remote.add_arguments(c)
    c.set_defaults(func=run)
