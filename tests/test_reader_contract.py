"""The reader contract: what every readable format in the table does, checked on the same
terms for all of them (in the spirit of xarray's ``test_backends.py``).

A format joins by declaring itself (``FORMAT``) and by giving at least one sample in
``tests/samples.py``; ``test_every_readable_format_has_samples`` fails for one that does
not.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings

import numpy as np
import pytest
import xarray as xr

import xafm
from tests import samples
from tests.helpers import raise_if_dask_computes
from xafm import registry
from xafm.core import chunks, contract, conventions, lazy
from xafm.core.contract import Probe

SAMPLES = samples.SAMPLES
IDS = [s.id for s in SAMPLES]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("contract")


@pytest.fixture(scope="module")
def paths(folder):
    """Every sample made (or found) once for the module."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in SAMPLES:
            try:
                out[s.id] = samples.make(s, folder / s.id.replace(".", "_"))
            except BaseException as exc:  # a missing shared file: each test skips or fails for its sample
                out[s.id] = exc
    return out


def _path(paths, sample):
    got = paths[sample.id]
    if isinstance(got, BaseException):
        raise got
    return got


@contextlib.contextmanager
def expected_warnings(sample):
    """Silence the warnings a sample is known to give (and only those)."""
    with warnings.catch_warnings():
        for w in sample.warnings:
            warnings.filterwarnings("ignore", message=f".*{w}")
        yield


def _open(path, sample, **kw):
    with expected_warnings(sample):
        return xafm.open(path, **kw)


def _engine(path, sample, **kw):
    with expected_warnings(sample):
        return xr.open_dataarray(path, engine="xafm", **kw)


def _main_name(da) -> str:
    return str(da.name)


class CountReads:
    """Counts every read of pixel data: all lazy sources go through LazyArray._read_checked."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = lazy.LazyArray._read_checked

        def counted(obj, key):
            self.calls += 1
            return original(obj, key)

        monkeypatch.setattr(lazy.LazyArray, "_read_checked", counted)


# --------------------------------------------------------------------------------------
# the table itself
# --------------------------------------------------------------------------------------
def test_every_declaration_meets_the_contract():
    table = registry.table()
    assert table, "the format table is empty"
    for fmt in table.values():
        assert fmt.problems() == [], fmt.name
        assert fmt.module, fmt.name


def test_every_readable_format_has_samples():
    have = samples.by_format()
    missing = [f.name for f in registry.readable() if f.name not in have]
    assert missing == [], f"readable formats without a contract sample in tests/samples.py: {missing}"
    assert set(have) <= {f.name for f in registry.readable()}


def test_a_declaration_that_breaks_the_contract_is_named():
    def read(path, **kwargs):  # options must be declared
        return None

    bad = contract.Format(name="Bad Name", description="", read=read)
    problems = bad.problems()
    assert any("name" in p for p in problems) and any("description" in p for p in problems)
    assert any("identify" in p for p in problems) and any("**kwargs" in p for p in problems)
    assert any("channel" in p for p in problems)


# --------------------------------------------------------------------------------------
# per sample
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_reads_the_reference_values(paths, sample):
    path = _path(paths, sample)
    want = sample.expected()
    da = _open(path, sample)
    assert registry.find(path).name == sample.format
    assert da.dims == want.dims and da.shape == want.shape
    if want.pixel_nm is not None:
        from xafm.core import model

        py, px = want.pixel_nm
        dy = float(np.diff(da.y.values[:2])[0]) if da.sizes["y"] > 1 else model.pixel_size_nm(da)[0]
        dx = float(np.diff(da.x.values[:2])[0]) if da.sizes["x"] > 1 else model.pixel_size_nm(da)[1]
        assert (dy, dx) == pytest.approx((py, px), rel=1e-6)
    lo, hi, mean = want.stats
    got = samples.stats_of(da.values)
    assert got[0] == pytest.approx(lo, rel=1e-6, abs=1e-9)
    assert got[1] == pytest.approx(hi, rel=1e-6, abs=1e-9)
    assert got[2] == pytest.approx(mean, rel=1e-6, abs=1e-9)
    assert _main_name(da) == want.channel


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_opening_reads_no_pixel_data(paths, sample, monkeypatch):
    fmt = registry.get(sample.format)
    path = _path(paths, sample)
    if not fmt.lazy:  # declared as read whole (the README says so): the values are in memory
        ds = registry.open_dataset(path)
        for v in ds.data_vars.values():
            assert v.variable._in_memory or isinstance(v.variable._data.array, lazy.InMemoryArray)
        return
    reads = CountReads(monkeypatch)
    with raise_if_dask_computes():
        da = _open(path, sample, chunks={})
        via_engine = _engine(path, sample)
        one = da.isel(time=-1)
    assert reads.calls == 0, "opening read pixel data"
    assert isinstance(via_engine.variable._data, xr.core.indexing.ExplicitlyIndexed)
    _ = one.values
    assert reads.calls > 0, "computing must read"


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_lazy_equals_eager(paths, sample):
    path = _path(paths, sample)
    eager = _open(path, sample)
    lazy_da = _open(path, sample, chunks={})
    assert lazy_da.chunks is not None
    np.testing.assert_array_equal(lazy_da.values, eager.values)
    for name, coord in eager.coords.items():
        np.testing.assert_array_equal(np.asarray(lazy_da.coords[name].values), np.asarray(coord.values), err_msg=name)
    lazily_indexed = _engine(path, sample)
    np.testing.assert_array_equal(lazily_indexed.isel(time=[-1, 0]).values, eager.isel(time=[-1, 0]).values)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_preferred_chunks_are_whole_frames_of_bounded_size(paths, sample, monkeypatch):
    path = _path(paths, sample)
    with expected_warnings(sample):
        ds = registry.open_dataset(path)
    main = next(iter(ds.data_vars.values())).variable
    lo, hi = chunks.CHUNK_RANGE
    for name, var in ds.variables.items():
        if "time" not in var.dims or var._in_memory:
            continue
        pref = var.encoding.get("preferred_chunks")
        assert pref is not None and set(pref) == set(var.dims), name
        stored = dict(zip(var.dims, var.encoding.get("chunks") or var.shape))
        for d in var.dims:
            if d != "time":
                assert pref[d] in (var.sizes[d], stored[d]), f"{name}: frames split along {d}"
        item = var.dtype.itemsize
        chunk_bytes = item * int(np.prod([pref[d] for d in var.dims]))
        one_stored = item * int(np.prod([stored[d] if d != "time" or var.encoding.get("chunks") else 1 for d in var.dims]))
        assert chunk_bytes <= max(hi, one_stored), f"{name}: {chunk_bytes} bytes per chunk"
        assert chunk_bytes >= lo or pref["time"] == var.sizes["time"], f"{name}: {chunk_bytes} bytes per chunk"
        assert pref["time"] == main.encoding["preferred_chunks"]["time"] or name in ds.data_vars, f"{name}: time chunks differ from the data's"
    # with a smaller target, every format cuts whole frames a few at a time
    frame = chunks.frame_bytes(main)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 2 * frame)
    small = _open(path, sample, chunks={})
    n = small.sizes["time"]
    stored_t = (small.encoding.get("chunks") or (1,))[0]
    want = min(n, max(2, stored_t))
    assert small.chunks[0][0] == want and sum(small.chunks[0]) == n
    for d, c in zip(small.dims[1:], small.chunks[1:]):
        assert c == (small.sizes[d],) or small.encoding.get("chunks"), f"frames split along {d}"


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_channels_are_listed_and_open(paths, sample):
    path = _path(paths, sample)
    names = xafm.channels(path)
    assert names and all(isinstance(n, str) and n for n in names)
    assert len(set(names)) == len(names), "channel names are unique"
    default = _open(path, sample)
    if "channel" in default.dims:
        assert list(default.channel.values) == names
    else:
        assert default.attrs["channel"] in names or conventions.safe_channel(default.attrs["channel"]) in [conventions.safe_channel(n) for n in names]
    for name in names[:4]:
        one = _open(path, sample, channel=name, chunks={})
        assert "channel" not in one.dims
        assert conventions.safe_channel(name) == one.name or one.attrs["channel"] == conventions.safe_channel(name)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_unknown_channel_and_option_are_refused(paths, sample):
    path = _path(paths, sample)
    with pytest.raises(xafm.ChannelError, match="no-such-channel") as err:
        _open(path, sample, channel="no-such-channel")
    assert str(path) in str(err.value) or path.name in str(err.value)
    fmt = registry.get(sample.format)
    with pytest.raises(xafm.UnknownOptionError) as err:
        _open(path, sample, chanel="x")
    for option in fmt.read_options():
        assert option in str(err.value)
    assert "did you mean 'channel'" in str(err.value)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_damaged_and_garbage_files_give_corrupt_file_errors(paths, sample, tmp_path):
    path = _path(paths, sample)
    for kind, copy in (("truncated", samples.damaged_copy), ("garbage", samples.garbage_copy)):
        bad = copy(sample, path, tmp_path / kind)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(xafm.CorruptFileError) as err:
                xafm.open(bad)
        assert str(bad) in str(err.value) or bad.name in str(err.value), f"{kind}: the error names the file"


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_the_engine_gives_the_same_stack(paths, sample):
    path = _path(paths, sample)
    mine = _open(path, sample)
    theirs = _engine(path, sample).load()
    xr.testing.assert_equal(mine, theirs)
    own = conventions.PROVENANCE_ATTR
    assert {k: v for k, v in mine.attrs.items() if k != own}.keys() == {k for k in theirs.attrs if k != own}
    strip = lambda recs: [{k: v for k, v in r.items() if k != "timestamp"} for r in recs]  # noqa: E731
    assert strip(mine.afm.provenance) == strip(theirs.afm.provenance)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_lazy_arrays_pickle_for_dask(paths, sample):
    path = _path(paths, sample)
    lazy_da = _open(path, sample, chunks={})
    clone = pickle.loads(pickle.dumps(lazy_da))
    np.testing.assert_array_equal(clone.values, _open(path, sample).values)
    indexed = _engine(path, sample)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(indexed)).values, clone.values)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_content_checks_claim_only_their_own_files(paths, sample):
    path = _path(paths, sample)
    probe = Probe(path)
    claims = [f.name for f in registry.readable() if registry.confirms(f, probe)]
    assert claims == [sample.format]
    assert registry.identify(path).name == sample.format
    # under a name no format uses, the content alone finds the format
    assert registry.identify(path) is registry.find(path)


@pytest.mark.parametrize("content", [b"[1, 2]", b'"text"', b"null", b"{not json", b'{"attributes": [1]}', b"\xff\xfe"])
def test_content_checks_never_fail_on_odd_metadata(tmp_path, content):
    """A folder whose metadata is valid JSON of the wrong shape, or no JSON at all, is
    simply not confirmed (a content check that raised would be a bug in xafm)."""
    for name in ("zarr.json", ".zattrs"):
        store = tmp_path / name.strip(".") / "s.ome.zarr"
        store.mkdir(parents=True)
        (store / name).write_bytes(content)
        probe = Probe(store)
        assert [f.name for f in registry.readable() if registry.confirms(f, probe)] == []
        with pytest.raises(xafm.CorruptFileError):
            xafm.open(store)
