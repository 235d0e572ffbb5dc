"""The ``xafm`` xarray backend: ``xr.open_dataset(path, engine="xafm")`` for every format
in the format table, lazily (variables are ``BackendArray``s that keep only a path)."""

from __future__ import annotations

import os
from typing import Any

from xarray.backends import BackendEntrypoint


class XafmBackendEntrypoint(BackendEntrypoint):
    description = "AFM stacks and videos (xafm): bundles, OME-TIFF, vendor AFM files"
    url = "https://github.com/xafm/xafm"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "channel")

    def open_dataset(self, filename_or_obj: Any, *, drop_variables: Any = None, channel: str | None = None, **kwargs: Any):
        from .formats import open_dataset

        if not isinstance(filename_or_obj, (str, os.PathLike)):
            raise TypeError("the xafm engine opens paths, not file objects")
        kw = {"channel": channel} if channel is not None else {}
        ds = open_dataset(filename_or_obj, **kw, **kwargs)
        if drop_variables:
            ds = ds.drop_vars(drop_variables, errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        from pathlib import Path

        from .formats import FORMATS, _suffix_match

        if not isinstance(filename_or_obj, (str, os.PathLike)):
            return False
        p = Path(filename_or_obj)
        fmt = _suffix_match(p)
        if fmt is not None and fmt.can_read:
            return True
        return p.is_dir() and any(f.folder for f in FORMATS.values()) and _folder_ok(p)


def _folder_ok(p: Any) -> bool:
    from .formats import find

    try:
        find(p)
        return True
    except Exception:
        return False
