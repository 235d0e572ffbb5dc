"""The command line's options for URLs (``s3://``, ``gs://``, ``https://``): fsspec's
``storage_options`` as JSON, or the two that users set most, ``--anon`` and
``--endpoint-url`` (an S3-compatible server such as MinIO or Ceph)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..exceptions import FormatError


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("URLs (s3://, gs://, https://)")
    g.add_argument("--storage-options", default=None, metavar="JSON",
                   help='fsspec options for the URL\'s file system, e.g. \'{"profile": "lab"}\'')
    g.add_argument("--anon", action="store_true", help="read without credentials (public buckets)")
    g.add_argument("--endpoint-url", default=None, metavar="URL", help="the S3-compatible server to use (MinIO, Ceph, ...)")


def options(args: argparse.Namespace, url: str) -> dict[str, Any] | None:
    """The storage options the arguments give for ``url`` (None when none are given)."""
    out: dict[str, Any] = {}
    if getattr(args, "storage_options", None):
        try:
            given = json.loads(args.storage_options)
        except json.JSONDecodeError as exc:
            raise FormatError(f"--storage-options is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise FormatError("--storage-options must be a JSON object ({...})")
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

    for path in paths:
        if path is None:
            continue
        text = sources.local_path(path)
        found = options(args, text)
        if found is None:
            continue
        if not sources.is_url(text):
            if path is paths[0]:
                raise FormatError(f"--storage-options, --anon and --endpoint-url are for URLs (s3://, gs://, https://), not {path}")
            continue
        sources.remember_options(text, found)
