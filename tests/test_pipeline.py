"""Pipelines in playNano's syntax: strings and YAML files parsed against the catalogue,
cast as playNano casts (checked against playNano's own parser where it is installed),
run lazily and recorded, with playNano's ``clear``."""

from __future__ import annotations

import importlib
import json
import subprocess

import dask.array as dsa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from xafm import processing
from xafm.exceptions import FileError, StackError
from xafm.processing import pipeline

from . import playnano_ref
from .helpers import raise_if_dask_computes

catalogue_module = importlib.import_module("xafm.processing.catalogue")  # the module; the package's name is the function


@pytest.fixture
def test_step(monkeypatch):
    """A step declared only for this test (the catalogue restored afterwards): the parser
    and the runner must take new steps without any change of theirs."""
    monkeypatch.setattr(catalogue_module, "_STEPS", dict(catalogue_module._STEPS))

    @processing.step("filter")
    def test_offset(da, by: float = 1.0, *, scale: int = 1, note: str = "x"):
        """Add ``by * scale`` to every pixel (a step for the tests)."""
        return processing.apply(da, lambda f, by, scale: f + by * scale, name="test_offset", by=by, scale=scale)

    @processing.step("filter")
    def test_needs(da, value: float):
        """Add ``value`` to every pixel (a step whose parameter must be given)."""
        return processing.apply(da, lambda f, value: f + value, name="test_needs", value=value)

    return test_offset


def tilted(n=3, h=16, w=20, seed=0):
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    return np.stack([0.3 * xx - 0.2 * yy + 5 + i + rng.normal(0, 0.01, (h, w)) for i in range(n)])


# --------------------------------------------------------------------------------------
# values and syntax
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [("2", 2), ("-3", -3), ("2.0", 2.0), (".5", 0.5), ("true", True), ("False", False), ("1e-3", 0.001), ("2.5E2", 250.0), ("median", "median"), ("1.2.3", "1.2.3"), (" 7 ", 7)],
)
def test_values_are_cast_as_playnano_casts_them(text, value):
    got = pipeline.cast_value(text)
    assert got == value and type(got) is type(value)


def test_string_pipeline_names_and_params(test_step):
    steps = pipeline.parse_string(" remove_plane ;test_offset:by=2.5, scale=3 ;; align_rows:method=mean; clear;")
    assert steps == [("remove_plane", {}), ("test_offset", {"by": 2.5, "scale": 3}), ("align_rows", {"method": "mean"}), ("clear", {})]
    assert type(steps[1][1]["scale"]) is int


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("remove_plan", "no processing step 'remove_plan' (did you mean 'remove_plane'?)"),
        ("align_rows:methd=mean", "step 'align_rows' has no parameter 'methd' (did you mean 'method'?); its parameters are: method, "),
        ("test_needs", "step 'test_needs' needs value"),
        ("mask_threshold:2", "'2' is not key=value"),
        ("clear:all=true", "step 'clear' has no parameter 'all'; its parameters are: none"),
    ],
)
def test_bad_pipelines_fail_when_parsed(text, message, test_step):
    with pytest.raises(StackError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        pipeline.parse_string(text)


def test_string_and_file_together_are_refused(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("filters:\n  - name: remove_plane\n")
    with pytest.raises(StackError, match="not both"):
        pipeline.parse_pipeline("remove_plane", f)
    assert pipeline.parse_pipeline(None, None) == [] and pipeline.parse_pipeline("", None) == []


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
def test_yaml_and_json_files(tmp_path, test_step):
    y = tmp_path / "steps.yaml"
    y.write_text("# a pipeline\nfilters:\n  - name: remove_plane\n  - name: test_offset\n    by: 2\n    note: hello\n  - name: clear\n  - name: mask_threshold\n    threshold: 0.5\n    above: false\n")
    expected = [("remove_plane", {}), ("test_offset", {"by": 2, "note": "hello"}), ("clear", {}), ("mask_threshold", {"threshold": 0.5, "above": False})]
    assert pipeline.parse_file(y) == expected
    j = tmp_path / "steps.json"
    j.write_text(json.dumps({"filters": [{"name": n, **p} for n, p in expected]}))
    assert pipeline.parse_file(j) == expected
    # xafm's addition: parameters under `params:` (the key `name` names the step)
    n = tmp_path / "nested.yaml"
    n.write_text("filters:\n  - name: mask_threshold\n    threshold: 2\n    params:\n      name: bumps\n      above: false\n")
    assert pipeline.parse_file(n) == [("mask_threshold", {"threshold": 2, "name": "bumps", "above": False})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps:\n  - name: remove_plane\n", "top-level 'filters:'"),
        ("filters: remove_plane\n", "'filters' must be a list"),
        ("filters:\n  - remove_plane\n", "step 1 under 'filters' must be a mapping with a 'name'"),
        ("filters:\n  - name: remove_plane\n  - name: gaussian_filtr\n", "no processing step 'gaussian_filtr'"),
        ("filters:\n  - name: align_rows\n    order: 2\n", "step 1: step 'align_rows' has no parameter 'order'"),
        ("filters: [\n", "not a YAML or JSON pipeline file"),
    ],
)
def test_bad_files_name_the_file(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(FileError, match=message) as info:
        pipeline.parse_file(f)
    assert str(f) in str(info.value)
    with pytest.raises(FileError, match="no such file"):
        pipeline.parse_file(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------------------
# against playNano's own parser
# --------------------------------------------------------------------------------------
def playnano_parse(kind: str, arg: str) -> list:
    """playNano's parse_processing_string / parse_processing_file, run in its own environment."""
    exe = playnano_ref.require()
    code = (
        "import json, sys\nfrom playnano.cli.utils import parse_processing_string, parse_processing_file\n"
        "f = parse_processing_string if sys.argv[1] == 'string' else parse_processing_file\n"
        "print(json.dumps([[n, p] for n, p in f(sys.argv[2])]))\n"
    )
    done = subprocess.run([exe, "-c", code, kind, arg], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [(n, p) for n, p in json.loads(done.stdout.strip().splitlines()[-1])]


PLAYNANO_PIPELINES = [
    "remove_plane; row_median_align; gaussian_filter:sigma=1.5",
    "remove_plane;mask_threshold:threshold=2; clear ; polynomial_flatten:order=2",
    "gaussian_filter:sigma=2.0,truncate=4; mask_mean_offset:factor=-1.0; row_median_align",
    " ; zero_mean ;; mask_morphological:threshold=1,structure_size=3;clear",
    "mask_threshold:threshold=true; gaussian_filter:sigma=1,mode=nearest",
]


@pytest.fixture
def syntax_only(monkeypatch):
    """Names and parameters unchecked (the catalogue of this branch may lack playNano's
    steps): what is compared is the syntax and the casting."""
    monkeypatch.setattr(pipeline, "_check_name", lambda name, where: name)
    monkeypatch.setattr(pipeline, "check_step", lambda name, params, where="pipeline": None)


@pytest.mark.parametrize("text", PLAYNANO_PIPELINES)
def test_strings_parse_as_playnano_parses_them(text, syntax_only):
    ours = pipeline.parse_string(text)
    theirs = playnano_parse("string", text)
    assert ours == theirs
    assert [[type(v) for v in p.values()] for _, p in ours] == [[type(v) for v in p.values()] for _, p in theirs]


def test_files_parse_as_playnano_parses_them(tmp_path, syntax_only):
    f = tmp_path / "steps.yaml"
    f.write_text(
        "filters:\n  - name: remove_plane\n  - name: gaussian_filter\n    sigma: 2.0\n  - name: mask_threshold\n    threshold: 2\n"
        "  - name: clear\n  - name: polynomial_flatten\n    order: 2\n  - name: row_median_align\n"
    )
    assert pipeline.parse_file(f) == playnano_parse("file", str(f))


# --------------------------------------------------------------------------------------
# a round trip: any params written in the syntax come back
# --------------------------------------------------------------------------------------
keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
values = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: float(f"{v:.6f}")),
    st.booleans(),
    st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True).filter(lambda s: s not in ("true", "false")),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a_step", "other_step"]), st.dictionaries(keys, values, max_size=4)), max_size=5))
def test_any_pipeline_written_in_the_syntax_parses_back(steps):
    text = "; ".join(n + (":" + ", ".join(f"{k}={pipeline.format_value(v) if isinstance(v, bool) else repr(v) if isinstance(v, float) else v}" for k, v in p.items()) if p else "") for n, p in steps)
    original = (pipeline._check_name, pipeline.check_step)
    pipeline._check_name, pipeline.check_step = (lambda name, where: name), (lambda name, params, where="pipeline": None)
    try:
        back = pipeline.parse_string(text)
    finally:
        pipeline._check_name, pipeline.check_step = original
    assert back == [(n, p) for n, p in steps]
    assert [[type(v) for v in p.values()] for _, p in back] == [[type(v) for v in p.values()] for _, p in steps]


# --------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------
def test_pipeline_runs_the_catalogue_steps_lazily_and_records_them(test_step):
    values = tilted()
    eager = xafm.stack(values, pixel_size_nm=1.0)
    lazy = xafm.stack(dsa.from_array(values, chunks=(1, -1, -1)), pixel_size_nm=1.0)
    steps = pipeline.parse_string("remove_plane; align_rows:method=mean; test_offset:by=0.5,scale=2")
    with raise_if_dask_computes():
        out = pipeline.run_pipeline(lazy, steps, keep_raw=True)
    assert isinstance(out.data, dsa.Array)
    expected = eager.afm.remove_plane().afm.align_rows(method="mean").values + 1.0
    np.testing.assert_allclose(out.values, expected, atol=1e-9)
    # the tilted plane is gone: what is left is the noise plus the offset
    assert abs(float(np.median(out.values)) - 1.0) < 0.05 and float(out.values.std()) < 0.05
    recs = [r for r in out.afm.provenance if r["type"] == "step"]
    assert [r["name"] for r in recs] == ["remove_plane", "align_rows", "test_offset"]
    assert recs[2]["params"] == {"by": 0.5, "scale": 2}
    np.testing.assert_array_equal(out.afm.layers["raw"].values, values)  # playNano's processed['raw']
    # a string is a pipeline too
    np.testing.assert_allclose(pipeline.run_pipeline(eager, "remove_plane; align_rows:method=mean; test_offset:by=0.5,scale=2").values, expected, atol=1e-9)


def test_clear_ends_the_mask_and_keeps_it():
    da = xafm.stack(tilted(), pixel_size_nm=1.0)
    assert pipeline.active_mask(da) is None
    masked = pipeline.run_pipeline(da, pipeline.parse_string("mask_threshold:threshold=6,name=high"))
    assert pipeline.active_mask(masked) == "high"
    cleared = pipeline.run_pipeline(masked, pipeline.parse_string("clear; remove_plane"))
    assert pipeline.active_mask(cleared) is None
    assert "high" in cleared.afm.masks  # clear changes which mask is used, not what is kept
    np.testing.assert_array_equal(cleared.afm.masks["high"].values, tilted() > 6)
    clear_rec = [r for r in cleared.afm.provenance if r.get("name") == "clear"]
    assert len(clear_rec) == 1 and clear_rec[0]["index"] == 2 and clear_rec[0]["mask_cleared"] == 1
    again = pipeline.run_pipeline(cleared, pipeline.parse_string("mask_threshold:threshold=0,name=low"))
    assert pipeline.active_mask(again) == "low"


def test_a_failing_step_is_named_with_its_place():
    da = xafm.stack(tilted(), pixel_size_nm=1.0)
    with pytest.raises(StackError, match=r"pipeline step 2 \(mask_threshold\): threshold must be a number"):
        pipeline.run_pipeline(da, [("remove_plane", {}), ("mask_threshold", {"threshold": "high"})])


def test_list_shows_every_catalogue_step(test_step):
    text = pipeline.describe_steps()
    lines = text.splitlines()
    for name, entry in processing.catalogue().items():
        i = next(i for i, line in enumerate(lines) if line.startswith(name + "  "))
        assert f"[{entry.kind}]" in lines[i] and entry.description in lines[i]
        assert lines[i + 1].strip().startswith("parameters:")
    i = next(i for i, line in enumerate(lines) if line.startswith("test_offset  "))
    assert lines[i] == "test_offset  [filter]  Add ``by * scale`` to every pixel (a step for the tests)."
    assert lines[i + 1] == "    parameters: by=1.0, scale=1, note=x"
    i = next(i for i, line in enumerate(lines) if line.startswith("test_needs  "))
    assert lines[i + 1] == "    parameters: value"  # it must be given
    assert any(line.startswith("clear  [mask]") for line in lines)


def test_clear_is_recorded_as_playnano_records_it():
    """The provenance in a bundle lists the steps as playNano's own pipeline does: the same
    indices, names and step types, ``clear`` without a key and with ``mask_cleared``; read
    back, the ``clear`` is still there."""
    from xafm.core import provenance

    values = tilted(n=2, h=12, w=12)
    text = "remove_plane; mask_threshold:threshold=0.001; clear; remove_plane"
    theirs = json.loads(playnano_ref.run_pipeline(values, text)["provenance"])["steps"]  # its provenance["processing"]
    ours_da = pipeline.run_pipeline(xafm.stack(values, pixel_size_nm=1.0), pipeline.parse_string(text))
    ours = provenance.to_playnano(ours_da, provenance.records(ours_da))["processing"]["steps"]
    assert [(s["index"], s["name"], s["step_type"]) for s in ours] == [(s["index"], s["name"], s["step_type"]) for s in theirs]
    cleared = next(s for s in ours if s["name"] == "clear")
    assert cleared["mask_cleared"] is True and "mask_key" not in cleared and "processed_key" not in cleared
    back, _ = provenance.from_playnano(json.loads(json.dumps({"processing": {"steps": theirs}})))
    restored = xafm.stack(values, pixel_size_nm=1.0)
    restored = provenance.with_records(restored, back)
    assert pipeline.active_mask(restored) is None and [r.get("name") for r in back if r.get("mask_cleared")] == ["clear"]
