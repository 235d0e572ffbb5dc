"""The ``xafm`` xarray backend: ``xr.open_dataset(path, engine="xafm")`` for every readable
format in the format table, lazily (variables are ``BackendArray``s that keep only a path).

``guess_can_open`` claims a file (or a URL: its first bytes, one ranged request) only when
a format's content check confirms it, so with
xafm installed, xarray's own engines still open their files (a plain ``.zarr`` store, a
netCDF-4 ``.h5``) exactly as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import xarray as xr
from xarray.backends import BackendEntrypoint

from . import registry


class XafmBackendEntrypoint(BackendEntrypoint):
    description = "AFM stacks and HS-AFM videos (xafm): vendor AFM files, playNano bundles, OME-TIFF, OME-Zarr"
    url = "https://github.com/xafm/xafm"
    #: xarray passes these through; every reader's declared options (from the format table)
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "storage_options", *registry.read_option_names())

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        storage_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> xr.Dataset:
        """``storage_options``: fsspec's options for a URL (credentials, endpoint,
        ``anon=True``), kept for the URL and what lies below it."""
        if not isinstance(filename_or_obj, (str, os.PathLike)):
            raise TypeError("the xafm engine opens paths and URLs, not file objects")
        if storage_options is not None:
            from .core import sources

            sources.remember_options(sources.local_path(filename_or_obj), storage_options)
        ds = registry.open_dataset(filename_or_obj, **options)
        if drop_variables:
            ds = ds.drop_vars(drop_variables, errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if not isinstance(filename_or_obj, (str, os.PathLike)):
            return False
        return registry.identify(filename_or_obj) is not None
