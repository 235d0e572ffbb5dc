"""The command line's options for URLs (``s3://``, ``gs://``, ``https://``): fsspec's
``storage_options`` as JSON, or the two that users set most, ``--anon`` and
``--endpoint-url`` (an S3-compatible server such as MinIO or Ceph)."""

from __future__ import annotations

import argparse
from typing import Any

from ..exceptions import FormatError
from . import spellings


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("URLs (s3://, gs://, https://)")
    g.add_argument("--storage-options", type=spellings.storage_options, default=None, metavar="JSON",
                   help='fsspec options for the URLs\' file system, as JSON: \'{"profile": "lab"}\', '
                        '\'{"key": ..., "secret": ..., "client_kwargs": {"endpoint_url": ...}}\'')
    g.add_argument("--anon", action="store_true", help="read without credentials (public buckets)")
    g.add_argument("--endpoint-url", default=None, metavar="URL", help="the S3-compatible server to use (MinIO, Ceph, ...)")


def options(args: argparse.Namespace, url: str) -> dict[str, Any] | None:
    """The storage options the arguments give for ``url`` (None when none are given)."""
    out: dict[str, Any] = {}
    given = getattr(args, "storage_options", None)
    if isinstance(given, str):  # set by hand rather than parsed by argparse
        given = spellings.storage_options(given)
    if given:
        out.update(given)
    protocol = url.split("://", 1)[0].lower() if "://" in url else ""
    if getattr(args, "anon", False):
        if protocol in ("gs", "gcs"):
            out["token"] = "anon"
        else:
            out["anon"] = True
    if getattr(args, "endpoint_url", None):
        if protocol in ("gs", "gcs"):
            out["endpoint_url"] = args.endpoint_url
        else:
            kwargs = dict(out.get("client_kwargs") or {})
            kwargs["endpoint_url"] = args.endpoint_url
            out["client_kwargs"] = kwargs
    return out or None


def remember(args: argparse.Namespace, *paths: str | None) -> None:
    """Use the arguments' storage options for each of ``paths`` that is a URL."""
    from ..core import sources

    given = [sources.local_path(p) for p in paths if p is not None]
    urls = [text for text in given if sources.is_url(text)]
    if not urls:
        if given and options(args, given[0]) is not None:
            raise FormatError(f"--storage-options, --anon and --endpoint-url are for URLs (s3://, gs://, https://), not {' or '.join(given)}")
        return
    for url in urls:
        found = options(args, url)
        if found is not None:
            sources.remember_options(url, found)
