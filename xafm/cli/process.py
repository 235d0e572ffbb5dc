"""``xafm process``: run a playNano pipeline on a file, lazily, and write the outputs under
playNano's names (``NAME_filtered.h5``, ``NAME_filtered.gif``, ``NAME_filtered/NAME_filtered_0000.png``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import convert, remote, spellings


def run(args: argparse.Namespace) -> int:
    from .. import processing
    from ..exceptions import FormatError
    from ..processing import pipeline

    if args.list:
        print(pipeline.describe_steps())
        return 0
    if args.input is None:
        raise FormatError("give an INPUT file (or --list to see the steps)")
    # everything checked before anything is read: the pipeline, the formats, the drawing
    steps = pipeline.parse_pipeline(args.processing, args.processing_file)
    formats = convert.checked_formats(args)
    if not (formats or args.make_gif or args.make_video or args.make_sequence):
        raise FormatError("nothing to do: give --export FMT ... and/or --make-gif / --make-video / --make-sequence")
    render = convert.render_options(args)
    convert.video_formats(args.make_video)
    name = spellings.output_name(args.output_name, args.input)

    import xafm

    out = convert.output_folder(args)  # before the open: remembers --storage-options for a URL input
    da = xafm.open(args.input, chunks={}, channel=args.channel)  # whole frames, a few at a time
    done = pipeline.run_pipeline(da, steps, keep_raw=True)
    filtered = any(step != pipeline.CLEAR and processing.get(step).kind != "mask" for step, _ in steps)
    out_name = f"{name}_filtered" if filtered else name
    written: dict[str, Path | str] = {}
    with convert.progress(args.progress):
        if formats:
            # --raw: the data as read (playNano's processed['raw']), under the plain name
            raw = args.raw and "raw" in done.afm.layers
            written.update(done.afm.export(out, name if args.raw else out_name, formats, raw=raw, overwrite=args.overwrite, fsync=args.fsync))
    written.update(convert.write_animations(done, out, out_name, args, render, sequence_folder=convert.member(out, out_name), sequence_prefix=out_name))
    for step_name, params in steps:
        print(f"step: {step_name}" + (f" {params}" if params else ""))
    for fmt, path in written.items():
        print(f"{fmt}: {path}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "process", help="run a processing pipeline (playNano's syntax) and export",
        description='Run steps of the catalogue (xafm process --list), e.g. --processing "remove_plane; row_median_align; '
                    'gaussian_filter:sigma=1.5", lazily, and write NAME_filtered.* outputs.',
    )
    p.add_argument("input", nargs="?", default=None)
    p.add_argument("--list", action="store_true", help="list the processing steps with their parameters and exit")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--processing", default=None, metavar="STEPS", help='"step; step:key=value,key=value; ..." (playNano\'s syntax; clear ends the mask)')
    group.add_argument("--processing-file", default=None, metavar="FILE", help="a YAML (or JSON) file: filters: [- name: STEP, key: value ...]")
    convert.add_output_arguments(p)
    remote.add_arguments(p)
    p.set_defaults(func=run)
