"""Helpers shared by the test modules (importable as ``tests.helpers``)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import dask
import pytest

#: ``../shared/data`` beside the project root.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """Path of a real instrument file; skip (locally) or fail (CI) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        msg = f"{path} is absent: real instrument files live in ../shared/data beside the project"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set, so this is a failure)")
        pytest.skip(msg)
    return path


def reference(group: str = "afm") -> dict:
    return json.loads(shared_file(group, "reference.json").read_text())


class CountingScheduler:
    """A dask scheduler that counts computes and raises past ``max_computes``
    (the idea of xarray's ``raise_if_dask_computes``)."""

    def __init__(self, max_computes: int = 0):
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(f"too many dask computes: {self.total_computes} > {self.max_computes}")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0):
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


def assert_matches_reference(da, ref: dict) -> None:
    """A stack read from a real file matches reference.json: dims, shape (single images are
    one frame), pixel size along both axes from the coordinates, and min / max / mean of the
    values to 1e-6 relative."""
    import numpy as np

    from xafm.core import conventions, model

    want = tuple(ref["shape"])
    assert da.dims == conventions.DIMS
    assert da.shape == ((1, *want) if len(want) == 2 else want)
    assert model.pixel_size_nm(da) == pytest.approx((ref["pixel_to_nm"],) * 2, rel=1e-6)
    values = np.asarray(da.values)
    assert values.min() == pytest.approx(ref["min"], rel=1e-6)
    assert values.max() == pytest.approx(ref["max"], rel=1e-6, abs=1e-12)  # the .asd maximum is -0.0
    assert values.mean() == pytest.approx(ref["mean"], rel=1e-6)
