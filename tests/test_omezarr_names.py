"""OME-Zarr node keys of masks and layers: safe in URLs and object stores, stable, unique
(also where case is ignored), and the user's names restored on reading."""

from __future__ import annotations

import hashlib
import re
import urllib.parse

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.test_omezarr import validate_store
from xafm.exceptions import FormatError
from xafm.formats import omezarr
from xafm.formats.omezarr import layout

#: What a key may hold (the task's rule: ASCII letters, digits, -, _, .).
SAFE = re.compile(r"[A-Za-z0-9._-]+")
AWKWARD = " &µ/%._-~\\:?#'\"\t\n" + "aAbB09" + "üßÅ" + "\u0301\u00a0"
names = st.text(alphabet=st.sampled_from(AWKWARD), min_size=1, max_size=12) | st.text(min_size=1, max_size=70)


def check_key(key: str) -> None:
    assert SAFE.fullmatch(key), key
    assert key not in (".", "..") and not key.startswith("__") and not key.startswith(("-", "."))
    assert not key.endswith("."), "Windows drops trailing dots"
    assert len(key) <= 50
    assert urllib.parse.quote(key, safe="") == key, "a URL holds the key as it is, so nothing needs escaping"


@given(name=names)
@settings(max_examples=300)
def test_keys_are_safe_and_stable(name):
    key = layout.node_name(name)
    check_key(key)
    assert layout.node_name(name) == key
    assert layout.node_name(str(name)) == key  # a function of the name alone


@given(group=st.lists(names, min_size=2, max_size=12, unique=True))
@settings(max_examples=300)
def test_keys_are_unique_within_a_group_even_ignoring_case(group):
    group = group + [g.upper() for g in group] + [g.lower() for g in group]
    group = list(dict.fromkeys(group))
    keys = [layout.node_name(n) for n in group]
    assert len({k.lower() for k in keys}) == len(group)


def test_plain_names_are_their_own_keys_and_others_are_readable():
    for name in ("grains", "a_b", "raw", "mask.v2", "height-trace", "m1", "x" * 64):
        assert layout.node_name(name) == name
    for name, readable in (("a b", "a_b"), ("grains & µ", "grains"), ("Grains", "Grains"), ("hi/1", "hi_1"), ("ü x", "u_x"), ("__init", "init"), ("con", "con")):
        key = layout.node_name(name)
        assert re.fullmatch(re.escape(readable) + r"--[0-9a-f]{8}", key), (name, key)
    for name in (".", "..", "%", "µ", "/", "...", "__"):
        assert re.fullmatch(r"n--[0-9a-f]{8}", layout.node_name(name))
    # pinned: the hash is SHA-256 of the UTF-8 name, so keys never change between versions
    assert layout.node_name("grains & µ") == "grains--" + hashlib.sha256("grains & µ".encode()).hexdigest()[:8]
    # collisions after sanitising stay apart
    assert len({layout.node_name(n) for n in ("a b", "a_b", "a/b", "a%20b", "a--b", "a_b--00000000")}) == 6


def awkward_round_trip(names_list, version, path, rng):
    data = rng.normal(size=(2, 6, 8)).astype(np.float32)
    masks = {n: data > (i - len(names_list) / 2) * 0.3 for i, n in enumerate(names_list)}
    layers = {n: data + i for i, n in enumerate(names_list[:3])}
    da = xafm.stack(data, pixel_size_nm=1.0, masks=masks, layers=layers)
    omezarr.write(da, path, version=version, levels=2)
    back = xafm.open(path)
    assert set(back.afm.masks) == set(masks) and set(back.afm.layers) == set(layers)
    for n in masks:
        np.testing.assert_array_equal(back.afm.masks[n].values, masks[n])
    for n in layers:
        np.testing.assert_array_equal(back.afm.layers[n].values, layers[n])
    on_disk = sorted(p.name for p in (path / "labels").iterdir() if p.is_dir())
    assert len(on_disk) == len(masks)
    for key in on_disk:
        check_key(key)
    return path


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_the_task_names_survive_the_round_trip(version, tmp_path, rng):
    path = awkward_round_trip(["a b", "a_b", "grains & µ", "hi/1", "50%", "..", "__x", "A b", "a B"], version, tmp_path / "s.ome.zarr", rng)
    validate_store(path)


@given(group=st.lists(names, min_size=1, max_size=5, unique=True), version=st.sampled_from(["0.5", "0.4"]))
@settings(max_examples=10)
def test_any_names_survive_the_round_trip(group, version, tmp_path_factory):
    awkward_round_trip(group, version, tmp_path_factory.mktemp("n") / "s.ome.zarr", np.random.default_rng(len(group)))


def test_a_key_collision_is_refused_naming_the_store(tmp_path, monkeypatch, rng):
    """Two names whose 8-digit hashes agree (forced here) would share a node: refused."""
    monkeypatch.setattr(layout, "_digest", lambda name: "00000000")
    data = rng.normal(size=(1, 4, 4))
    da = xafm.stack(data, pixel_size_nm=1.0, masks={"a b": data > 0, "a&b": data < 0})
    path = tmp_path / "s.ome.zarr"
    with pytest.raises(FormatError, match=re.escape(str(path)) + ".*'a b' and 'a&b'"):
        omezarr.write(da, path)
    assert not path.exists()
