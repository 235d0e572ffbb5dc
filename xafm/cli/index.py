"""``xafm index FOLDER`` (or a URL prefix): one row per file xafm reads, from the headers only, as an aligned
table, CSV or JSON (docs/folder-index.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FORMATS = ("table", "csv", "json")


def run(args: argparse.Namespace) -> int:
    from .. import folder_index
    from . import remote

    remote.remember(args, args.folder)
    df = folder_index.index(args.folder, recursive=args.recursive, unknown=args.unknown)
    write = {"table": folder_index.to_table, "csv": folder_index.to_csv, "json": folder_index.to_json}[args.format]
    text = write(df)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0  # indexed, even when some files could not be read (their rows say why)


def add_parser(sub: Any) -> None:
    from . import remote

    p = sub.add_parser(
        "index", help="list the files of a folder that xafm reads (headers only: fast)",
        description="One row per file xafm reads: path, format, channels, frames, size in px and nm, pixel size, "
                    "date, duration; files that cannot be read are listed with the reason.",
    )
    p.add_argument("folder", help="a folder, or a URL prefix (s3://bucket/run1, gs://..., https://...)")
    p.add_argument("--recursive", "-r", action="store_true", help="also list the files of subfolders")
    p.add_argument("--format", default="table", choices=FORMATS, help="an aligned table (the default), CSV or JSON records")
    p.add_argument("--unknown", action="store_true", help="also list the files no format claims (skipped by default)")
    remote.add_arguments(p)
    p.set_defaults(func=run)
