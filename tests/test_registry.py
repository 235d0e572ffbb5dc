"""The format table: the name chooses, the content confirms; a file that is not what its
name says gets an error saying what it is; options are the declared ones."""

from __future__ import annotations

import inspect
import pickle
import shutil

import numpy as np
import pytest

import xafm
from tests.helpers import shared_file
from xafm import _builtin_formats, builtin_index, registry
from xafm.core.contract import ROLES, Deferred, Probe, options_of, resolved
from xafm.testing import write_asd


@pytest.fixture
def stack():
    return xafm.stack(np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4), pixel_size_nm=1.0)


def test_a_file_whose_content_contradicts_its_name_says_what_it_is(tmp_path, stack):
    tif = stack.afm.to_ome_tiff(tmp_path / "s.ome.tif")
    renamed = tmp_path / "s.h5"
    shutil.copyfile(tif, renamed)
    with pytest.raises(xafm.SuffixMismatchError, match=r"the name says HDF5 bundle.*but the content is OME-TIFF \(usually named \.ome\.tif") as err:
        xafm.open(renamed)
    assert str(renamed) in str(err.value) and isinstance(err.value, xafm.UnknownFormatError)
    with pytest.raises(xafm.SuffixMismatchError):
        xafm.channels(renamed)
    assert registry.identify(renamed) is None  # the engine does not claim it either


def test_a_name_no_format_uses_is_read_by_its_content(tmp_path, stack):
    src = write_asd(tmp_path / "v.asd", np.zeros((2, 3, 4), np.int16))
    for name in ("video.dat", "video", "VIDEO.ASD.bak"):
        dst = tmp_path / name
        shutil.copyfile(src, dst)
        assert registry.find(dst).name == "asd"
        assert xafm.open(dst).shape == (2, 3, 4)
    nanoscope = tmp_path / "scan.pfc"  # a name Bruker users give Nanoscope files
    shutil.copyfile(shared_file("afm", "old_bruker.002"), nanoscope)
    assert registry.find(nanoscope).name == "nanoscope"


def test_nothing_recognisable_is_an_unknown_format(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(xafm.UnknownFormatError, match="not a file xafm recognises by its name or content") as err:
        xafm.open(p)
    assert not isinstance(err.value, xafm.SuffixMismatchError)
    assert ".asd" in str(err.value) and ".ome.zarr" in str(err.value)


def test_a_damaged_file_goes_to_the_reader_its_name_points_to(tmp_path):
    p = tmp_path / "broken.asd"
    p.write_bytes(b"\x07\x00\x00\x00" + bytes(200))  # no known file version
    with pytest.raises(xafm.CorruptFileError, match="unknown .asd file version 7"):
        xafm.open(p)


def test_options_are_checked_against_the_declaration(tmp_path, stack):
    path = stack.afm.to_h5(tmp_path / "s.h5")
    with pytest.raises(xafm.UnknownOptionError, match=r"has no option 'chanel' \(did you mean 'channel'\?\); its options are: channel"):
        xafm.open(path, chanel=1)
    with pytest.raises(xafm.ChannelError, match=r"no channel 'nonexistent'; available: \['height'\]"):
        xafm.open(path, channel="nonexistent")
    with pytest.raises(xafm.UnknownOptionError, match="compresion"):
        stack.afm.to_h5(tmp_path / "t.h5", compresion="gzip")
    assert not (tmp_path / "t.h5").exists()


def test_formats_table_lists_what_the_modules_declare():
    rows = {r["name"]: r for r in xafm.formats_table()}
    for fmt in registry.table().values():
        assert rows[fmt.name]["suffixes"] == fmt.suffixes and rows[fmt.name]["read"] == fmt.can_read
    assert rows["asd"]["suffixes"] == (".asd",) and rows["asd"]["write"] is False
    assert rows["zarr"]["read"] and rows["zarr"]["write"] and rows["gif"]["write"] and not rows["gif"]["read"]


def test_readme_formats_table_names_every_readable_suffix():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Formats", 1)[1].split("\n## ", 1)[0]
    for fmt in registry.readable():
        for suffix in fmt.suffixes:
            assert f"`{suffix}`" in table or suffix in table, f"README's formats table lacks {suffix} ({fmt.name})"


@pytest.mark.parametrize(
    "method, name, says",
    [("to_gif", "x.mp4", "MP4 video"), ("to_h5", "x.ome.tif", "OME-TIFF"), ("to_ome_tiff", "x.npz", "NumPy NPZ bundle"), ("to_ome_zarr", "x.gif", "animated GIF")],
)
def test_writers_refuse_a_name_that_says_another_format(tmp_path, stack, method, name, says):
    with pytest.raises(xafm.FormatError, match=f"the name says {says}") as err:
        getattr(stack.afm, method)(tmp_path / name)
    assert str(tmp_path / name) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_writers_take_their_own_and_unclaimed_names(tmp_path, stack):
    stack.afm.to_video(tmp_path / "x.avi", scale_bar_nm=None)  # the video writer takes every container
    assert (tmp_path / "x.avi").stat().st_size > 0
    stack.afm.to_h5(tmp_path / "x.nc")  # a name no format claims is the user's choice ...
    np.testing.assert_array_equal(xafm.open(tmp_path / "x.nc").values, stack.values)  # ... read back by content


# --------------------------------------------------------------------------------------
# the generated index of xafm's own formats, and the deferred functions built from it
# --------------------------------------------------------------------------------------
REGENERATE = "python -m xafm.builtin_index"


@pytest.fixture(scope="module")
def declared():
    """Every built-in module's own declarations (each module imported)."""
    return builtin_index.builtin_declarations()


def test_the_generated_index_says_what_the_modules_declare(declared):
    indexed = _builtin_formats.FORMATS
    names = [(e["module"], e["name"]) for e in indexed]
    assert names == [(f.module, f.name) for f in declared], f"xafm/_builtin_formats.py lists other formats than the modules declare: run {REGENERATE}"
    assert list(dict.fromkeys(m for m, _ in names)) == list(builtin_index.BUILTIN_MODULES)
    for entry, fmt in zip(indexed, declared):
        expected = {
            "module": fmt.module, "name": fmt.name, "description": fmt.description, "suffixes": fmt.suffixes,
            "patterns": fmt.patterns, "folder": fmt.folder, "lazy": fmt.lazy,
            "declares": tuple(r for r in ("identify", "read", "channels", "write") if getattr(fmt, r) is not None),
            "read_options": tuple(n for n, p in inspect.signature(fmt.read).parameters.items() if p.kind is p.KEYWORD_ONLY) if fmt.read else (),
        }  # fmt: skip
        stale = [k for k in expected if entry.get(k) != expected[k]] + [k for k in entry if k not in expected]
        assert stale == [], f"xafm/_builtin_formats.py is stale for format {fmt.name!r} ({', '.join(stale)}): run {REGENERATE}"


def test_every_built_in_declaration_meets_the_contract(declared):
    """Held strictly, as the table held them when it imported every module."""
    for fmt in declared:
        assert fmt.problems() == [], fmt.name
        assert not any(isinstance(getattr(fmt, r), Deferred) for r in ROLES), fmt.name


def test_table_entries_call_the_functions_their_modules_declare(declared):
    table = registry.table()
    for fmt in declared:
        entry = table[fmt.name]
        for role in ROLES:
            func, real = getattr(entry, role), getattr(fmt, role)
            assert (func is None) == (real is None), (fmt.name, role)
            if real is not None:
                assert isinstance(func, Deferred) and resolved(func) is real, (fmt.name, role)
                assert inspect.signature(func) == inspect.signature(real) and func.__doc__ == real.__doc__
    # taken from the declaration of that format name, not from an attribute named after the role
    from xafm.animation import sequence, video

    assert resolved(table["png"].write) is sequence.to_frames and not hasattr(sequence, "write")
    assert resolved(table["mp4"].write) is resolved(table["avi"].write) is video.to_video


def test_deferred_functions_pickle_and_show_their_options(stack):
    read = registry.get("asd").read
    back = pickle.loads(pickle.dumps(read))
    assert isinstance(back, Deferred) and back == read and back is not read
    assert list(options_of(back)) == ["channel", "on_truncated"] == list(options_of(read))
    assert {"channel", "on_truncated"} <= set(registry.read_option_names())
    writer = inspect.signature(stack.afm.to_h5).parameters  # the accessor shows the writer's own signature
    assert next(iter(writer)) == "path" and "compression" in writer and "overwrite" in writer


def test_a_hand_edited_index_entry_is_an_error_naming_the_command(tmp_path):
    entry = dict(_builtin_formats.FORMATS[0])
    entry["name"] = "not-declared"
    fmt = registry.deferred(entry)
    with pytest.raises(xafm.FormatError, match=f"no longer declares the read of format 'not-declared'.*{REGENERATE}"):
        fmt.read("x.h5")
    (tmp_path / "x.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(xafm.FormatError, match="no longer declares the identify"):  # not taken for odd content
        registry.confirms(fmt, Probe(tmp_path / "x.h5"))
