"""OME-TIFF pages found without tifffile loading every page (``ometiff.uniform``): the
same lazy arrays and values as tifffile's series, and tifffile's reading whenever one page
disagrees with the others."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import tifffile

import xafm
from xafm.core import model
from xafm.formats.ometiff import omexml, pages, uniform


def _write(path, rng, n=40, ny=6, nx=5):
    data = rng.normal(size=(n, ny, nx)).astype(np.float32)
    da = xafm.stack(data, pixel_size_nm=2.0, times=np.arange(n) * 0.5, layers={"raw": data * 2}, masks={"high": data > 0})
    da.afm.to_ome_tiff(path)
    return data


def _both(path):
    with tifffile.TiffFile(path, _multifile=False) as tf:
        images = omexml.parse(str(path), tf.ome_metadata).findall(omexml.q("Image"))
        fast = pages.uniform_series(tf, str(path), images)
        slow = [pages.series_source(tf, str(path), i) for i in range(len(tf.series))]
    return fast, slow


@pytest.mark.parametrize("n", [1, 3, 40])
def test_runs_give_tifffiles_series(tmp_path, rng, n):
    path = tmp_path / "s.ome.tif"
    data = _write(path, rng, n=n)
    fast, slow = _both(path)
    assert fast is not None and len(fast) == len(slow) == 3  # data, layer, mask
    for (a, _), (b, _) in zip(fast, slow):
        assert isinstance(a, type(b)) and (a.offset, a.shape, a.raw_dtype) == (b.offset, b.shape, b.raw_dtype)
        np.testing.assert_array_equal(a[:], b[:])
    da = xafm.open(path, chunks={})
    np.testing.assert_array_equal(da.values, data)
    np.testing.assert_array_equal(model.layers(da)["raw"].values, data * 2)
    np.testing.assert_array_equal(model.masks(xafm.open(path))["high"].values, data > 0)


def _ifd_offsets(path):
    with tifffile.TiffFile(path, _multifile=False) as tf:
        return [p.offset for p in tf.pages], tf.byteorder


def _patch_entry(path, ifd, tag, value):
    """Overwrite an inline LONG/SHORT value of ``tag`` in the classic-TIFF IFD at ``ifd``."""
    raw = bytearray(path.read_bytes())
    (count,) = struct.unpack_from("<H", raw, ifd)
    for j in range(count):
        pos = ifd + 2 + 12 * j
        t, typ = struct.unpack_from("<HH", raw, pos)
        if t == tag:
            struct.pack_into("<I" if typ == 4 else "<H", raw, pos + 8, value)
            path.write_bytes(bytes(raw))
            return
    raise AssertionError(f"no tag {tag}")


@pytest.mark.parametrize(
    ("page", "tag", "delta"),
    [(17, uniform.STRIP_OFFSETS, -4), (39, uniform.STRIP_OFFSETS, 8), (2, 259, 4), (25, 257, -1)],
    ids=["strip-offset-mid", "strip-offset-last", "compression", "rows"],
)
def test_one_disagreeing_page_sends_the_file_to_tifffile(tmp_path, rng, page, tag, delta):
    path = tmp_path / "s.ome.tif"
    _write(path, rng, n=40)
    offsets, bo = _ifd_offsets(path)
    assert bo == "<"
    with tifffile.TiffFile(path, _multifile=False) as tf:
        tf.pages.useframes = False
        old = tf.pages[page].tags[tag].value
        old = old[0] if isinstance(old, tuple) else old
    _patch_entry(path, offsets[page], tag, int(old) + delta)
    fast, _ = _both(path)
    assert fast is None  # not taken for uniform: tifffile reads it as before
    with tifffile.TiffFile(path, _multifile=False) as tf:
        images = omexml.parse(str(path), tf.ome_metadata).findall(omexml.q("Image"))
        assert uniform.runs_of(tf, str(path), [(0, 40)]) is None
        assert len(images) == 3


def test_chain_longer_than_the_xml_says_is_not_a_run(tmp_path, rng):
    path = tmp_path / "s.ome.tif"
    _write(path, rng, n=12)
    with tifffile.TiffFile(path, _multifile=False) as tf:
        assert uniform.runs_of(tf, str(path), [(0, 12), (12, 12), (24, 12)]) is not None
        assert uniform.runs_of(tf, str(path), [(0, 12), (12, 12), (24, 11)]) is None  # pages left over
        assert uniform.runs_of(tf, str(path), [(0, 12), (12, 12)]) is None
        assert uniform.runs_of(tf, str(path), [(0, 13), (13, 12), (25, 11)]) is None  # runs across images


def _disk_reads() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("read_bytes"))


def _evict(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(not os.path.exists("/proc/self/io") or not hasattr(os, "posix_fadvise"), reason="counts disk reads through Linux's /proc/self/io")
def test_a_lazy_open_and_a_frame_read_touch_only_their_bytes_on_disk(tmp_path):
    """The IFDs lie between the frames: finding them must not read the frames (a lazy open
    of a 10 GB stack would read 10 GB), and a frame read must read that frame, not the
    megabytes the kernel's read-ahead would add."""
    frames = np.random.default_rng(1).normal(size=(160, 256, 256)).astype("float32")
    path = tmp_path / "big.ome.tif"
    xafm.stack(frames, pixel_size_nm=1.0).afm.to_ome_tiff(path, fsync=False)
    size = os.path.getsize(path)
    _evict(path)
    before = _disk_reads()
    with open(path, "rb") as fh:  # the measure itself: reading the file is seen as disk reads
        fh.read()
    if _disk_reads() - before < size // 2:
        pytest.skip(f"{tmp_path} is not on a disk whose reads /proc/self/io counts (tmpfs?)")
    _evict(path)
    before = _disk_reads()
    da = xafm.open(path, lazy=True)
    opened = _disk_reads() - before
    assert opened < size // 20, f"the open read {opened} of {size} bytes"
    frame_bytes = frames[0].nbytes
    before = _disk_reads()
    np.testing.assert_array_equal(da.isel(time=80).values, frames[80])
    assert _disk_reads() - before <= 2 * frame_bytes + 2**16
