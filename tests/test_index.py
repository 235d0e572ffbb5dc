"""The folder index (``xafm.index``, ``xafm index FOLDER``; docs/folder-index.md): one row per
file xafm reads, from the headers only, checked on ``../shared/data`` against
``reference.json`` and ``tests/samples.py``, through the function and the command line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xafm
from tests import samples
from tests.helpers import SHARED_DATA, raise_if_dask_computes, reference, shared_file
from xafm import builtin_index, folder_index, registry
from xafm.cli import main
from xafm.core.lazy import LazyArray

ROOT = Path(__file__).resolve().parents[1]


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


@contextlib.contextmanager
def counting_reads():
    """Count every ``_read`` of every lazy array class (each format's own included): the
    one way pixel data (values, masks, layers) leaves a file."""
    builtin_index.builtin_declarations()  # every format module imported, so every LazyArray subclass exists
    calls: list[str] = []
    patched = []
    for cls in [LazyArray, *_all_subclasses(LazyArray)]:
        if "_read" in vars(cls):
            original = vars(cls)["_read"]

            def counted(self, key, _original=original, _name=cls.__name__):
                calls.append(_name)
                return _original(self, key)

            patched.append((cls, original))
            cls._read = counted
    try:
        yield calls
    finally:
        for cls, original in patched:
            cls._read = original


@pytest.fixture(scope="module")
def shared():
    """The index of ../shared/data (recursive), and the lazy reads it made."""
    shared_file("afm", "reference.json")
    with counting_reads() as calls, raise_if_dask_computes():
        df = xafm.index(SHARED_DATA, recursive=True)
    return df, list(calls)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xafm", "index", *argv], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def shared_json():
    res = _cli(str(SHARED_DATA), "--recursive", "--format", "json")
    assert res.returncode == 0, res.stderr
    return res.stdout


def _real_samples() -> list[tuple[str, samples.Sample]]:
    """Every sample of tests/samples.py that is a file of ../shared/data, by its path there."""
    out = []
    for s in samples.SAMPLES:
        for group in ("afm", "other"):
            if (SHARED_DATA / group / s.id).exists():
                out.append((f"{group}/{s.id}", s))
    return out


def _row(df: pd.DataFrame, path: str) -> pd.Series:
    found = df[df["path"] == path]
    assert len(found) == 1, f"{path}: {len(found)} rows in\n{df[['path', 'error']]}"
    return found.iloc[0]


def _make_all(tmp: Path, items) -> dict[str, Path]:
    """Each sample made in a folder of its own (their file names may clash)."""
    return {item.id: samples.make(item, tmp / f"s{i}") for i, item in enumerate(items)}


# --------------------------------------------------------------------------------------
# the real samples
# --------------------------------------------------------------------------------------
def test_every_real_sample_is_a_row_with_the_reference_sizes(shared):
    df, _ = shared
    real = _real_samples()
    assert len(real) >= 25, [p for p, _ in real]
    for path, sample in real:
        row = _row(df, path)
        want = sample.expected()
        assert row["error"] == "" and row["problem"] == "", (path, row["problem"])
        assert row["format"] == sample.format, path
        assert row["channel"] == want.channel, path
        assert row["frames"] == want.shape[0], path
        assert (row["ny"], row["nx"]) == want.shape[-2:], path
        extra = {d: n for d, n in zip(want.dims, want.shape) if d not in ("time", "y", "x")}
        assert row["other_dims"] == ", ".join(f"{d}: {n}" for d, n in extra.items()), path
        if want.pixel_nm is None:  # the file states none: xafm's 1 nm, and the warning says so
            assert samples.NO_SIZE in row["warnings"], path
        else:
            assert (row["pixel_y_nm"], row["pixel_x_nm"]) == pytest.approx(want.pixel_nm, rel=1e-6), path
            assert (row["height_nm"], row["width_nm"]) == pytest.approx((want.shape[-2] * want.pixel_nm[0], want.shape[-1] * want.pixel_nm[1]), rel=1e-6), path


def test_reference_pixel_sizes_and_frames_directly(shared):
    """reference.json's own numbers (frames, shape, pixel_to_nm), not through samples.py."""
    df, _ = shared
    ref = reference("afm")
    checked = 0
    for name, entry in ref.items():
        if "pixel_to_nm" not in entry:
            continue
        row = _row(df, f"afm/{name}")
        shape = entry["shape"]
        assert row["frames"] == (shape[0] if len(shape) == 3 else 1), name
        assert (row["ny"], row["nx"]) == tuple(shape[-2:]), name
        assert row["pixel_x_nm"] == pytest.approx(entry["pixel_to_nm"], rel=1e-6), name
        assert row["pixel_y_nm"] == pytest.approx(entry.get("pixel_y_nm", entry["pixel_to_nm"]), rel=1e-6), name
        checked += 1
    assert checked >= 20


def test_dates_and_durations_match_the_reference(shared):
    """Dates (UTC) and durations where reference.json records them from other readers."""
    df, _ = shared
    ref = reference("afm")
    asd = ref["asd_sample_0.asd"]
    row = _row(df, "afm/asd_sample_0.asd")
    assert row["date"] == pd.Timestamp(asd["playnano_crosscheck"]["frame_metadata_0"]["start_epoch_ms"], unit="ms", tz="UTC")
    assert row["duration_s"] == pytest.approx(asd["frames"] * asd["frame_time_s"])
    jpk = ref["sample_0.h5-jpk"]
    row = _row(df, "afm/sample_0.h5-jpk")
    assert row["date"] == pd.Timestamp(jpk["file_start_times_epoch_ms"][0], unit="ms", tz="UTC")
    assert row["duration_s"] == pytest.approx((jpk["file_end_times_epoch_ms"][-1] - jpk["file_start_times_epoch_ms"][0]) / 1e3)
    sxm = ref["pyspm_test.sxm"]["header"]
    row = _row(df, "afm/pyspm_test.sxm")
    day, month, year = sxm["REC_DATE"].split(".")
    assert row["date"] == pd.Timestamp(f"{year}-{month}-{day}T{sxm['REC_TIME']}", tz="UTC")
    # the tip scans each line forth and back: 2 x SCAN_TIME a line (the file's ACQ_TIME,
    # which the reader takes, is the same rounded to 0.1 s)
    assert row["duration_s"] == pytest.approx(2 * float(str(sxm["SCAN_TIME_s"]).split()[0]) * row["ny"], abs=0.05)
    assert str(df["date"].dtype) == "datetime64[ns, UTC]"


def test_no_pixel_data_is_read(shared):
    """Indexing the whole of ../shared/data reads no values: no lazy array's ``_read`` ran
    and no dask graph was computed (the counter does see a read, below)."""
    _, calls = shared
    assert calls == []
    with counting_reads() as seen:
        row = xafm.open(shared_file("afm", "sample_0.jpk"), chunks={}).isel(time=0, y=0).values
    assert seen and row.shape == (256,), "the counter must see a read of pixel data"


def test_unreadable_shared_file_is_listed_with_its_error(shared):
    """The header-only Nanoscope file of ../shared/data: listed, with the reader's reason."""
    df, _ = shared
    row = _row(df, "afm/bruker_v97_header_only.002")
    assert row["error"] == "CorruptFileError" and "truncated" in row["problem"]
    assert row["format"] == "nanoscope" and pd.isna(row["frames"]) and pd.isna(row["pixel_x_nm"])
    assert not row["problem"].startswith("/"), "the row names the file; the reason does not repeat its path"


def test_omezarr_store_and_files_beside_it_are_one_row_each(shared):
    df, _ = shared
    assert _row(df, "other/blobs_image_v04.ome.zarr")["format"] == "zarr"
    assert not df["path"].str.startswith("other/blobs_image_v04.ome.zarr/").any()
    assert not df["path"].isin(["afm/reference.json", "afm/SOURCES.md"]).any(), "files no format claims are skipped"


# --------------------------------------------------------------------------------------
# the command line: the same rows as the DataFrame
# --------------------------------------------------------------------------------------
def _normalised(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in ("format", "channel", "channels", "other_dims", "warnings", "error", "problem"):
        out[c] = out[c].fillna("").astype(str)
    for c in ("frames", "ny", "nx"):
        out[c] = out[c].astype("Int64")
    for c in ("height_nm", "width_nm", "pixel_y_nm", "pixel_x_nm", "duration_s"):
        out[c] = out[c].astype("float64")
    out["date"] = pd.to_datetime(out["date"], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    return out[list(folder_index.COLUMNS)]


def test_cli_json_is_the_dataframe(shared, shared_json):
    df, _ = shared
    rows = json.loads(shared_json)
    assert isinstance(rows, list) and len(rows) == len(df)
    by_path = {r["path"]: r for r in rows}
    asd = by_path["afm/asd_sample_0.asd"]
    assert asd["frames"] == 32 and type(asd["frames"]) is int and type(asd["pixel_x_nm"]) is float  # numbers as numbers
    assert asd["date"] == "2017-11-21T13:12:07.000+00:00"  # ISO 8601
    assert by_path["afm/bruker_v97_header_only.002"]["frames"] is None
    pd.testing.assert_frame_equal(_normalised(pd.DataFrame(rows)), df)


def test_cli_csv_is_the_dataframe(shared, capsys):
    """In process (the JSON test above runs ``python -m xafm`` itself)."""
    df, _ = shared
    assert main(["index", str(SHARED_DATA), "-r", "--format", "csv"]) == 0
    back = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(back.columns) == list(folder_index.COLUMNS)
    pd.testing.assert_frame_equal(_normalised(back), df)


def test_table_is_aligned_and_readable(tmp_path, capsys):
    for name in ("asd_sample_0.asd", "bruker_v97_header_only.002", "bruker_v91_fastscan_nonsquare.001"):
        (tmp_path / name).symlink_to(shared_file("afm", name))
    assert main(["index", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    header = lines[0]
    assert header.startswith("path") and "frames" in header and "pixel nm" in header and "date (UTC)" in header
    assert len(lines) == 4
    starts = {name: header.index(name) for name in ("format", "channel", "size px", "pixel nm", "date (UTC)")}
    asd = next(line for line in lines if line.startswith("asd_sample_0.asd "))
    for name, at in starts.items():  # every column starts where its header does
        assert asd[at - 1] == " " and asd[at] != " ", (name, asd)
    assert asd[starts["format"]:].startswith("asd ") and "200 x 200" in asd and "2017-11-21 13:12:07" in asd
    assert "0.2058 x 0.1302" in next(line for line in lines if line.startswith("bruker_v91"))  # (y x) pixels, not square
    bad = next(line for line in lines if line.startswith("bruker_v97_header_only.002 "))
    assert "CorruptFileError: file is truncated" in bad


def test_the_picture_in_the_docs_is_the_index_of_shared_data(shared):
    """docs/folder-index.md shows ``xafm index ../shared/data --recursive``: its rows are
    today's (path, format, frames, size in px; the notes may change with the readers)."""
    import re

    df, _ = shared
    text = (ROOT / "docs" / "folder-index.md").read_text()
    block = re.search(r"```text\n(path .*?)```", text, re.S).group(1).strip().splitlines()
    now = folder_index.to_table(df).splitlines()

    def key(line: str) -> tuple[str, ...]:
        cells = re.split(r"\s{2,}", line.strip())
        return cells[0], cells[1], cells[3], cells[4]

    assert [key(line) for line in block] == [key(line) for line in now]


# --------------------------------------------------------------------------------------
# folders made for the purpose
# --------------------------------------------------------------------------------------
def test_not_images_are_listed_with_what_they_are(tmp_path):
    made = _make_all(tmp_path, samples.NOT_IMAGES)
    df = xafm.index(tmp_path, recursive=True)
    for item in samples.NOT_IMAGES:
        row = _row(df, made[item.id].relative_to(tmp_path).as_posix())
        assert row["error"] == "NotAnImageError", (item.id, row["error"], row["problem"])
        assert row["problem"].startswith(f"this is a {item.kind} file"), (item.id, row["problem"])
        assert row["format"] == item.format, item.id


def test_damaged_copies_are_listed_and_the_index_goes_on(tmp_path):
    """Truncated copies of real files: CorruptFileError rows between readable ones; the
    command line still exits 0 (the folder was indexed)."""
    by_id = {s.id: s for s in samples.SAMPLES}
    for name in ("sample_0.jpk", "asd_sample_0.asd", "pyspm_test.sxm"):
        samples.damaged_copy(by_id[name], shared_file("afm", name), tmp_path)
    (tmp_path / "good.sxm").symlink_to(shared_file("afm", "pyspm_test.sxm"))
    df = xafm.index(tmp_path)
    assert list(df["path"]) == ["asd_sample_0.asd", "good.sxm", "pyspm_test.sxm", "sample_0.jpk"]
    for name in ("sample_0.jpk", "asd_sample_0.asd", "pyspm_test.sxm"):
        row = _row(df, name)
        assert row["error"] == "CorruptFileError" and row["problem"], name
    assert _row(df, "good.sxm")["error"] == "" and _row(df, "good.sxm")["ny"] == 256
    assert main(["index", str(tmp_path), "--format", "csv"]) == 0


def test_recursive_finds_subfolders_and_only_with_it(tmp_path, capsys):
    from xafm.testing import write_asd

    write_asd(tmp_path / "top.asd", samples.ASD_LEVELS)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write_asd(tmp_path / "sub" / "in_sub.asd", samples.ASD_LEVELS[:2])
    xafm.registry.write("h5", samples.known_stack(), tmp_path / "sub" / "deeper" / "deep.h5")
    flat = xafm.index(tmp_path)
    assert list(flat["path"]) == ["top.asd"]
    deep = xafm.index(tmp_path, recursive=True)
    assert list(deep["path"]) == ["sub/deeper/deep.h5", "sub/in_sub.asd", "top.asd"]
    assert list(deep["frames"]) == [6, 2, 5]
    assert main(["index", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "top.asd" in out and "in_sub" not in out and "1 subfolder not searched" in out
    assert main(["index", str(tmp_path), "--recursive"]) == 0
    out = capsys.readouterr().out
    assert "sub/in_sub.asd" in out and "sub/deeper/deep.h5" in out


def test_an_omezarr_store_xafm_wrote_is_one_row(tmp_path):
    """The store holds a mask (labels) and a kept layer as groups of their own: still one row."""
    xafm.registry.write("zarr", samples.known_stack(), tmp_path / "video.ome.zarr")
    assert any(p.is_dir() for p in (tmp_path / "video.ome.zarr").rglob("*") if p.name != "0")
    want = samples._own_expected()
    for recursive in (False, True):
        df = xafm.index(tmp_path, recursive=recursive)
        assert list(df["path"]) == ["video.ome.zarr"]
        row = df.iloc[0]
        assert row["format"] == "zarr" and row["error"] == ""
        assert (row["frames"], row["ny"], row["nx"]) == want.shape
        assert (row["pixel_y_nm"], row["pixel_x_nm"]) == pytest.approx(want.pixel_nm)
        times = [0.0, 0.1, 0.25, 0.3, 0.5, 0.8]  # known_stack's; no frame durations: plus the median step
        assert row["duration_s"] == pytest.approx(times[-1] + float(np.median(np.diff(times))))


def test_a_damaged_store_is_one_row_with_its_error(tmp_path):
    store = xafm.registry.write("zarr", samples.known_stack(), tmp_path / "video.ome.zarr")
    samples._damage_zarr(store)
    df = xafm.index(tmp_path, recursive=True)
    assert list(df["path"]) == ["video.ome.zarr"], "the groups inside a damaged store are not files of their own"
    assert df.iloc[0]["error"] == "CorruptFileError"


def test_a_folder_of_frames_is_one_row(tmp_path):
    folder = samples.make(next(s for s in samples.SAMPLES if s.id == "jpk_video"), tmp_path)
    df = xafm.index(tmp_path, recursive=True)
    assert list(df["path"]) == [folder.name]
    assert df.iloc[0]["format"] == "folder" and df.iloc[0]["frames"] == 3


def test_a_folder_of_separate_images_is_a_row_and_with_recursive_its_files(tmp_path):
    """Two .jpk scans of different sizes: the frame-folder format claims the folder, which
    does not open as one video; its row says why, and --recursive lists the scans."""
    day = tmp_path / "day1"
    day.mkdir()
    (day / "a.jpk").symlink_to(shared_file("afm", "sample_0.jpk"))
    (day / "b.jpk-qi-image").symlink_to(shared_file("afm", "sample_0.jpk-qi-image"))
    flat = xafm.index(tmp_path)
    assert list(flat["path"]) == ["day1"] and flat.iloc[0]["format"] == "folder"
    assert flat.iloc[0]["error"] == "CorruptFileError" and "day1/b.jpk-qi-image" in flat.iloc[0]["problem"]
    deep = xafm.index(tmp_path, recursive=True)
    assert list(deep["path"]) == ["day1", "day1/a.jpk", "day1/b.jpk-qi-image"]
    assert list(deep["ny"][1:]) == [256, 100]


def test_an_impossible_start_date_is_unknown_not_the_end_of_the_index(tmp_path):
    """A header's date past what a date can be (here 1e20 ms) must not stop the index."""
    for name, ms in (("lying.h5", 1e20), ("fine.h5", 1.5e12)):
        da = xafm.stack(np.zeros((2, 3, 4), np.float32), pixel_size_nm=1.0, frame_metadata=[{"start_epoch_ms": ms, "frame_duration_s": 0.5}] * 2)
        xafm.registry.write("h5", da, tmp_path / name)
    df = xafm.index(tmp_path)
    assert list(df["path"]) == ["fine.h5", "lying.h5"]
    assert df["date"][0] == pd.Timestamp(1.5e12, unit="ms", tz="UTC") and pd.isna(df["date"][1])
    assert list(df["duration_s"]) == [1.5, 1.5]  # times 0, 1 and the last frame's 0.5 s


def test_a_file_whose_channels_cannot_be_listed_keeps_its_row(tmp_path, monkeypatch):
    (tmp_path / "a.sxm").symlink_to(shared_file("afm", "pyspm_test.sxm"))

    def refuse(path):
        raise xafm.CorruptFileError(path, "no channel list here")

    monkeypatch.setattr(registry, "channels", refuse)
    row = xafm.index(tmp_path).iloc[0]
    assert row["error"] == "" and row["ny"] == 256 and row["channels"] == ""
    assert "channels could not be listed (CorruptFileError: no channel list here)" in row["warnings"]


@pytest.mark.parametrize("companion", [True, False], ids=["companion", "members-only"])
def test_a_multi_file_ome_tiff_set_is_one_row(tmp_path, companion):
    sample = next(s for s in samples.SAMPLES if s.id == ("omeset.companion.ome" if companion else "omeset_1.ome.tif"))
    samples.make(sample, tmp_path)
    assert len(list(tmp_path.iterdir())) == 4 + companion
    df = xafm.index(tmp_path)
    assert list(df["path"]) == (["omeset.companion.ome"] if companion else ["omeset_0.ome.tif"])
    assert df.iloc[0]["frames"] == sample.expected().shape[0]
    assert df.iloc[0]["format"] == sample.format


def test_missing_folder_or_a_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(xafm.FileError, match="no such folder"):
        xafm.index(missing)
    assert main(["index", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xafm: error: ") and str(missing) in err and "Traceback" not in err
    file = tmp_path / "a.txt"
    file.write_text("x")
    assert main(["index", str(file)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_unknown_files_are_skipped_unless_asked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("scan of 3 May")
    np.save(tmp_path / "raw.npy", np.zeros(3))
    assert xafm.index(tmp_path).empty
    df = xafm.index(tmp_path, unknown=True)
    assert list(df["path"]) == ["notes.txt", "raw.npy"]
    assert set(df["error"]) == {"UnknownFormatError"}


def test_a_fifo_is_listed_not_opened(tmp_path):
    """Opening a FIFO waits for a writer: the index must not."""
    os.mkfifo(tmp_path / "stream.asd")

    def timeout(*_):
        raise TimeoutError("the index opened the FIFO")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    try:
        df = xafm.index(tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert list(df["path"]) == ["stream.asd"] and df.iloc[0]["error"] == "SpecialFileError"


def test_xafms_own_bugs_are_not_hidden_in_a_row(tmp_path, monkeypatch):
    """Only xafm's verdicts on files become rows; a programming error surfaces."""
    (tmp_path / "a.sxm").symlink_to(shared_file("afm", "pyspm_test.sxm"))

    def broken(path, **options):
        raise RuntimeError("a bug")

    monkeypatch.setattr(registry, "open_dataset", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        xafm.index(tmp_path)
