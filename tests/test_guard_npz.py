"""NPZ bundles: sizes in a zip are claims, not facts (docs/guarantees.md, NPZ).

Hostile bundles are built by hand (local headers, central directory and end record written
byte by byte, deflate streams assembled from pieces), so every claim can lie on its own:
a member's sizes, the archive's member count, a pickle's shape and memo. Each is refused
with an xafm error naming the file before anything of the claimed size exists (tracemalloc
peak small), and a lazy read of one frame of a large deflated member holds a few frames,
however large the member.
"""

from __future__ import annotations

import pickle
import re
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xafm
from tests.npz_craft import (
    FINAL,
    Member,
    bundle,
    deflate,
    deflate_piece,
    deflated,
    metadata_members,
    npy_bytes,
    npy_header,
    stored,
    write_zip,
)
from xafm.formats import _inflate

MiB = 2**20
#: What opening a hostile bundle may allocate (tracemalloc peak): far below what its claims ask.
SMALL = 48 * MiB


def open_small(path: Path):
    """Open ``path`` lazily and read its first and last frame, then eagerly; return the
    xafm error (or None) and the tracemalloc peak."""
    tracemalloc.start()
    err = None
    try:
        lazy = xr.open_dataarray(path, engine="xafm")
        lazy.isel(time=0).load()
        lazy.isel(time=-1).load()
        xafm.open(path)  # eager
    except xafm.XafmError as exc:
        err = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return err, peak


def assert_refused(path: Path, match: str, error=xafm.CorruptFileError) -> None:
    err, peak = open_small(path)
    assert err is not None, f"{path.name} opened and read without an error"
    assert isinstance(err, error), f"{type(err).__name__}: {err}"
    assert str(path) in str(err)
    assert re.search(match, str(err)), str(err)
    assert peak < SMALL, f"refusing {path.name} allocated {peak / MiB:.0f} MiB"


@pytest.fixture(scope="module", autouse=True)
def imports_done(tmp_path_factory):
    """Open and read one good deflated bundle first: the imports a first read triggers are
    slow under tracemalloc and are no part of what the tests measure."""
    path = bundle(tmp_path_factory.mktemp("warm") / "good.npz", deflated("data.npy", np.zeros((2, 4, 4), np.float32)))
    np.testing.assert_array_equal(xafm.open(path).isel(time=-1).values, 0)
    np.testing.assert_array_equal(xafm.open(path, chunks={"time": 1}).isel(time=-1).values, 0)


# --------------------------------------------------------------------------------------
# declared sizes against the members and the file
# --------------------------------------------------------------------------------------
FRAMES = 2**27  # a claimed frame count: 1 GiB for the time coordinate alone


def _lying_deflated_data(tmp_path):
    """4 kB of deflate stream whose member claims 2**27 one-pixel frames (512 MiB)."""
    header = npy_header((FRAMES, 1, 1))
    body = header + bytes(4 * 1000)
    return Member("data.npy", deflate(body), method=zipfile.ZIP_DEFLATED, file_size=len(header) + 4 * FRAMES, crc=0)


def _lying_stored_data(tmp_path):
    """A stored member claiming 2**27 frames whose bytes are not in the file."""
    header = npy_header((FRAMES, 1, 1))
    return Member("data.npy", header + bytes(4000), file_size=len(header) + 4 * FRAMES, compress_size=len(header) + 4 * FRAMES)


def _stored_sizes_disagree(tmp_path):
    header = npy_header((FRAMES, 1, 1))
    return Member("data.npy", header + bytes(4000), file_size=len(header) + 4 * FRAMES)


def _zero_pixel_frames(tmp_path):
    """2**27 frames of 0x1 pixels: a header whose sizes agree with a member of no data."""
    return Member("data.npy", npy_header((FRAMES, 0, 1)))


@pytest.mark.parametrize(
    "make,match",
    [
        (_lying_deflated_data, "claims .* bytes from .* compressed bytes"),
        (_lying_stored_data, "claims .* bytes at byte .*; the file is"),
        (_stored_sizes_disagree, "stored member 'data.npy' claims"),
        (_zero_pixel_frames, "has shape \\(134217728, 0, 1\\)"),
    ],
    ids=["deflated-claim", "stored-claim", "stored-sizes-disagree", "zero-pixel-frames"],
)
def test_declared_frame_count_is_checked_before_allocating(tmp_path, make, match):
    path = bundle(tmp_path / "claims.npz", make(tmp_path))
    assert path.stat().st_size < 20_000
    assert_refused(path, match)


def _short_stream(tmp_path):
    """A deflated member whose stream ends before the size it claims (within deflate's ratio)."""
    body = npy_bytes(np.zeros((64, 8, 8), np.float32))
    return Member("data.npy", deflate(body[: len(body) // 2]), method=zipfile.ZIP_DEFLATED, file_size=len(body), crc=zlib.crc32(body))


def _long_stream(tmp_path):
    """A deflated member whose stream goes on past the size it claims."""
    body = npy_bytes(np.zeros((64, 8, 8), np.float32))
    return Member("data.npy", deflate(body + bytes(4096)), method=zipfile.ZIP_DEFLATED, file_size=len(body), crc=zlib.crc32(body))


def _bad_crc(tmp_path):
    body = npy_bytes(np.arange(64 * 64, dtype=np.float32).reshape(64, 8, 8))
    return Member("data.npy", deflate(body), method=zipfile.ZIP_DEFLATED, content=body, crc=zlib.crc32(body) ^ 1)


@pytest.mark.parametrize(
    "make,match",
    [(_short_stream, "ends after \\d+ bytes; it claims"), (_long_stream, "inflates beyond the \\d+ bytes it claims"), (_bad_crc, "CRC")],
    ids=["ends-early", "runs-past", "bad-crc"],
)
def test_deflated_member_is_held_to_its_claimed_size_while_streaming(tmp_path, make, match):
    path = bundle(tmp_path / "stream.npz", make(tmp_path))
    assert_refused(path, match)


def test_unsupported_compression_method_is_refused(tmp_path):
    body = npy_bytes(np.zeros((2, 4, 4), np.float32))
    import bz2

    member = Member("data.npy", bz2.compress(body), method=zipfile.ZIP_BZIP2, content=body)
    path = bundle(tmp_path / "bz2.npz", member)
    assert_refused(path, "compression method 12")


@pytest.mark.parametrize(
    "claims,match",
    [({"entries": 5000, "cd_size": 100}, "claims 5000 members in a central directory of 100 bytes"),
     ({"entries": 0xFFFF}, "claims 65535 members, more than the"),
     ({"cd_size": 2**31}, "central directory claims 2147483648 bytes")],
    ids=["members-in-directory", "members", "directory-size"],
)
def test_zip_level_claims_are_checked_against_the_file(tmp_path, claims, match):
    members = [stored("data.npy", np.zeros((2, 4, 4), np.float32)), *metadata_members(2)]
    path = write_zip(tmp_path / "zipclaims.npz", members, **claims)
    assert_refused(path, match)


def test_timestamps_member_claiming_more_than_one_number_a_frame_is_refused(tmp_path):
    ts = deflated("timestamps.npy", np.zeros(2**20))  # 8 MiB of numbers for 2 frames, 8 kB in the file
    path = bundle(tmp_path / "ts.npz", stored("data.npy", np.zeros((2, 4, 4), np.float32)), extra=[ts])
    assert_refused(path, "'timestamps.npy' claims \\d+ bytes, more than the \\d+ xafm reads")


# --------------------------------------------------------------------------------------
# metadata caps
# --------------------------------------------------------------------------------------
def _inflating_text_member(name: str, chars: int, *, claim_honest: bool) -> Member:
    """A 0-d unicode member of ``chars`` characters of JSON (``[{},{},...]``), deflated from
    repeated pieces so that a 200 MB member is a few hundred kB of file."""
    unit = "{}," * (MiB // 3)
    n_units = chars // len(unit)
    head, tail = "[", "{}]"  # the text: [{},{},...,{}]
    text_len = len(head) + n_units * len(unit) + len(tail)
    header = npy_header((), f"<U{text_len}")
    block = unit.encode("utf-32-le")
    piece = deflate_piece(block, level=9)
    raw = [deflate_piece(header + head.encode("utf-32-le")), *([piece] * n_units), deflate_piece(tail.encode("utf-32-le")), FINAL]
    size = len(header) + 4 * text_len
    crc = zlib.crc32(header + head.encode("utf-32-le"))
    for _ in range(n_units):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail.encode("utf-32-le"), crc)
    return Member(name, raw, method=zipfile.ZIP_DEFLATED, file_size=size if claim_honest else MiB, crc=crc)


@pytest.mark.parametrize("claim_honest", [True, False], ids=["claimed-size", "lying-size"])
def test_metadata_json_inflating_to_200_mb_is_refused_with_a_bounded_read(tmp_path, claim_honest):
    fm = _inflating_text_member("frame_metadata_json.npy", 50 * 10**6, claim_honest=claim_honest)
    members = [stored("data.npy", np.zeros((2, 4, 4), np.float32)), fm,
               *[m for m in metadata_members(2) if m.name != b"frame_metadata_json.npy"]]
    path = write_zip(tmp_path / "bigjson.npz", members)
    assert path.stat().st_size < 400_000
    assert_refused(path, "'frame_metadata_json.npy'.*(more than the \\d+ xafm reads|inflates beyond)")


def test_metadata_json_with_millions_of_values_is_refused_before_parsing(tmp_path):
    """Within the character cap, but ``[{},{},...]`` would cost ~25 times its length to parse."""
    fm = _inflating_text_member("frame_metadata_json.npy", 9 * MiB, claim_honest=True)
    members = [stored("data.npy", np.zeros((2, 4, 4), np.float32)), fm,
               *[m for m in metadata_members(2) if m.name != b"frame_metadata_json.npy"]]
    path = write_zip(tmp_path / "manyvalues.npz", members)
    err, peak = open_small(path)
    assert isinstance(err, xafm.CorruptFileError) and "JSON values" in str(err) and str(path) in str(err), err
    assert peak < 120 * MiB  # the 36 MiB member and its text; parsing it would take ~250 MiB


def test_real_sized_per_frame_metadata_is_within_the_caps():
    """100,000 frames of ASD-like per-frame metadata (xafm's richest) pass both caps."""
    import json

    from xafm.formats import npzbundle

    frame = {"timestamp": 12345.6789012345, "frame_duration_s": 1.0075813598632812, "line_rate": 254.07377527779659,
             "start_epoch_ms": 1657901245514.793, "asd_frame_number": 99999, "asd_max_data": 3607, "asd_min_data": 3578,
             "asd_x_tilt": 0.0, "asd_y_tilt": 0.0, "frame_pixel_size_nm": 1.953125}
    text = np.array("[" + ", ".join([json.dumps(frame)] * 100_000) + "]")
    assert npzbundle._check_text("x.npz", "frame_metadata_json", text) is text


# --------------------------------------------------------------------------------------
# the restricted unpickler bounds what it builds
# --------------------------------------------------------------------------------------
P = pickle  # opcodes


def _proto3(body: bytes) -> bytes:
    return P.PROTO + b"\x03" + body + P.STOP


def _reconstruct_head() -> bytes:
    """numpy's ``_reconstruct(ndarray, (0,), b'b')`` as protocol 3 writes it."""
    return (P.GLOBAL + b"numpy._core.multiarray\n_reconstruct\n" + P.GLOBAL + b"numpy\nndarray\n"
            + P.BININT1 + b"\x00" + P.TUPLE1 + P.SHORT_BINBYTES + b"\x01b" + P.TUPLE3 + P.REDUCE)


def _object_dtype() -> bytes:
    return (P.GLOBAL + b"numpy\ndtype\n" + P.BINUNICODE + struct.pack("<I", 2) + b"O8" + P.NEWFALSE + P.NEWTRUE + P.TUPLE3 + P.REDUCE
            + P.MARK + P.BININT1 + b"\x03" + P.BINUNICODE + struct.pack("<I", 1) + b"|" + P.NONE + P.NONE + P.NONE
            + P.BININT + struct.pack("<i", -1) + P.BININT + struct.pack("<i", -1) + P.BININT1 + b"\x3f" + P.TUPLE + P.BUILD)


def _shape(dims) -> bytes:
    return P.MARK + b"".join(P.BININT + struct.pack("<i", d) for d in dims) + P.TUPLE


def pickle_claimed_shape() -> bytes:
    """An object array state claiming shape (2**24, 64) with one string."""
    items = P.EMPTY_LIST + P.BINUNICODE + struct.pack("<I", 1) + b"x" + P.APPEND
    state = P.MARK + P.BININT1 + b"\x01" + _shape((2**24, 64)) + _object_dtype() + P.NEWFALSE + items + P.TUPLE
    return _proto3(_reconstruct_head() + state + P.BUILD)


def pickle_ndarray_call() -> bytes:
    """``numpy.ndarray((2**24, 64), dtype('O'))``: a 8 GiB array of None from 200 bytes."""
    return _proto3(P.GLOBAL + b"numpy\nndarray\n" + P.MARK + _shape((2**24, 64)) + _object_dtype() + P.TUPLE + P.REDUCE)


def pickle_memo_references(n: int = 2**15) -> bytes:
    """An object array of ``n`` references to one 2 KiB string (two bytes of pickle each):
    cheap in bytes, ``2 n`` KiB of text once joined."""
    s = b"y" * 2048
    items = P.EMPTY_LIST + P.MARK + P.BINUNICODE + struct.pack("<I", len(s)) + s + P.BINPUT + b"\x00"
    items += (P.BINGET + b"\x00") * (n - 1) + P.APPENDS
    state = P.MARK + P.BININT1 + b"\x01" + _shape((n,)) + _object_dtype() + P.NEWFALSE + items + P.TUPLE
    return _proto3(_reconstruct_head() + state + P.BUILD)


def pickle_memo_jump() -> bytes:
    """Writes the memo at index 2**24: the unpickler would size its memo for 2**25 entries."""
    return _proto3(P.BINUNICODE + struct.pack("<I", 1) + b"x" + P.LONG_BINPUT + struct.pack("<I", 2**24))


@pytest.mark.parametrize(
    "make", [pickle_claimed_shape, pickle_ndarray_call, pickle_memo_references, pickle_memo_jump],
    ids=["claimed-shape", "ndarray-call", "memo-references", "memo-jump"],
)
def test_hostile_pickle_that_passes_the_class_filter_builds_nothing_large(tmp_path, make):
    payload = make()
    assert b"builtins" not in payload and b"os\n" not in payload  # only the globals numpy's pickles use
    header = npy_header((), "|O")
    members = [stored("data.npy", np.zeros((2, 4, 4), np.float32)), Member("channel.npy", header + payload),
               *[m for m in metadata_members(2) if m.name != b"channel.npy"]]
    path = write_zip(tmp_path / "pickle.npz", members)
    assert path.stat().st_size < 400_000
    err, peak = open_small(path)
    assert isinstance(err, (xafm.UnsafeFileError, xafm.CorruptFileError)), err
    assert str(path) in str(err) and "'channel'" in str(err)
    assert peak < SMALL, f"the pickle built {peak / MiB:.0f} MiB"


def test_playnano_style_pickled_strings_still_read(tmp_path):
    """The bounds admit what numpy writes for playNano's 0-d object arrays."""
    for proto in (3, 4):  # np.save pickles with protocol 3
        payload = pickle.dumps(np.array("height_trace", dtype=object), protocol=proto)
        members = [stored("data.npy", np.zeros((2, 4, 4), np.float32)), Member("channel.npy", npy_header((), "|O") + payload),
                   *[m for m in metadata_members(2) if m.name != b"channel.npy"]]
        path = write_zip(tmp_path / f"p{proto}.npz", members)
        assert xafm.open(path).name == "height_trace"


# --------------------------------------------------------------------------------------
# bounded memory of lazy reads of deflated members
# --------------------------------------------------------------------------------------
FRAME = (512, 512)  # float32: 1 MiB a frame
FRAMES_PER_BLOCK = 4


def large_deflated_bundle(path: Path, n_blocks: int, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """A bundle whose deflated ``data`` holds ``n_blocks`` times the same 4 random frames
    (values 0..15, so about 4:1 compressible), then one frame of its own; compressed once,
    the stream repeated. Returns the path, the 4-frame block and the last frame."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 16, (FRAMES_PER_BLOCK, *FRAME)).astype(np.float32)
    last = rng.integers(16, 32, (1, *FRAME)).astype(np.float32)
    n = n_blocks * FRAMES_PER_BLOCK + 1
    header = npy_header((n, *FRAME))
    piece = deflate_piece(block.tobytes())
    raw = [deflate_piece(header), *([piece] * n_blocks), deflate_piece(last.tobytes()), FINAL]
    crc = zlib.crc32(header)
    for _ in range(n_blocks):
        crc = zlib.crc32(block.tobytes(), crc)
    crc = zlib.crc32(last.tobytes(), crc)
    data = Member("data.npy", raw, method=zipfile.ZIP_DEFLATED, file_size=len(header) + n * block[0].nbytes, crc=crc)
    return bundle(path, data, n_frames=n), block, last[0]


def _peak_reading_last_frame(path: Path, how: str) -> tuple[int, np.ndarray]:
    _inflate.clear_checkpoints()
    tracemalloc.start()
    try:
        lazy = xr.open_dataarray(path, engine="xafm") if how == "engine" else xafm.open(path, chunks={"time": 1})
        frame = lazy.isel(time=-1).values
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, frame


@pytest.fixture(scope="module")
def big_bundles(tmp_path_factory):
    """Two deflated bundles of 65 and 201 one-MiB frames (built once for the module)."""
    folder = tmp_path_factory.mktemp("big")
    return {"small": large_deflated_bundle(folder / "s.npz", 16), "large": large_deflated_bundle(folder / "l.npz", 50, seed=1)}


@pytest.mark.parametrize("how", ["engine", "dask"])
def test_lazy_read_of_last_frame_holds_a_few_frames_whatever_the_member_size(big_bundles, how):
    (small, _, last_small), (large, _, last_large) = big_bundles["small"], big_bundles["large"]
    peak_small, got_small = _peak_reading_last_frame(small, how)
    peak_large, got_large = _peak_reading_last_frame(large, how)
    np.testing.assert_array_equal(got_small, last_small)
    np.testing.assert_array_equal(got_large, last_large)
    frame = FRAME[0] * FRAME[1] * 4
    assert peak_large < 16 * frame, f"reading one 1 MiB frame held {peak_large / MiB:.0f} MiB"
    assert abs(peak_large - peak_small) < 2 * frame, (peak_small, peak_large)


class CountingFile:
    """A file whose reads are counted (compressed bytes the inflater took)."""

    total = 0

    def __init__(self, f):
        self.f = f

    def __getattr__(self, name):
        return getattr(self.f, name)

    def read(self, n=-1):
        out = self.f.read(n)
        CountingFile.total += len(out)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_random_and_sequential_reads_resume_from_checkpoints(big_bundles, monkeypatch):
    path, block, last = big_bundles["large"]  # 201 frames
    da = xr.open_dataarray(path, engine="xafm")
    _inflate.clear_checkpoints()
    real_open = _inflate.sources.open_binary
    monkeypatch.setattr(_inflate.sources, "open_binary", lambda p, **k: CountingFile(real_open(p, **k)))
    compressed = zipfile.ZipFile(path).getinfo("data.npy")
    ratio = compressed.compress_size / compressed.file_size
    frame = FRAME[0] * FRAME[1] * 4

    def compressed_read(frames) -> int:
        CountingFile.total = 0
        got = da.isel(time=frames).values
        want = np.stack([last if f == 200 else block[f % FRAMES_PER_BLOCK] for f in np.atleast_1d(frames)])
        np.testing.assert_array_equal(got.reshape(want.shape), want)
        return CountingFile.total

    first = compressed_read(199)  # inflates the whole member once
    assert first > 0.9 * compressed.compress_size
    interval = _inflate.CHECKPOINT_INTERVAL
    # random access later costs at most one checkpoint interval (plus a read chunk)
    for f in (81, 3, 150, [7, 190]):
        assert compressed_read(f) < 1.5 * (interval + 2 * frame) * ratio + 2 * MiB * (1 + np.size(f)), f
    # reading frame after frame goes on where the previous read stopped
    compressed_read(40)
    for f in range(41, 45):
        assert compressed_read(f) < 1.5 * frame * ratio + 2 * MiB, f


def test_xafm_deflated_bundle_reads_back_lazily_frame_by_frame(tmp_path, rng):
    """``to_npz(compress=True)`` (zip64 local headers, layers and masks deflated) reads back
    through the streaming inflater: frame by frame, in any order, and whole."""
    values = rng.normal(size=(12, 16, 8)).astype(np.float32)
    da = xafm.stack(values, pixel_size_nm=1.0).afm.remove_plane(keep_layer=True).afm.mask_threshold(0.0)
    path = da.afm.to_npz(tmp_path / "c.npz", compress=True)
    assert {i.compress_type for i in zipfile.ZipFile(path).infolist()} == {zipfile.ZIP_DEFLATED}
    lazy = xr.open_dataset(path, engine="xafm")
    want = da.values
    for f in (11, 0, 5, 6, 7, 3):
        np.testing.assert_array_equal(lazy[da.name].isel(time=f).values, want[f])
    np.testing.assert_array_equal(lazy[da.name].isel(time=[9, 2, 9], x=slice(1, 5)).values, want[[9, 2, 9], :, 1:5])
    back = xafm.open(path, chunks={"time": 1})
    np.testing.assert_array_equal(back.values, want)
    np.testing.assert_array_equal(back.afm.layers["raw"].values, da.afm.layers["raw"].values)
    mask = next(iter(da.afm.masks))
    np.testing.assert_array_equal(back.afm.masks[mask].values, da.afm.masks[mask].values)
