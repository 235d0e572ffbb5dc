"""xafm's processing steps against playNano 0.5's own output on the same data, run in
playNano's environment (``tests/playnano_ref.py``; skipped where it is not installed).

Each pipeline string runs unchanged in both: in xafm through :func:`_xafm_pipeline`, which
runs each step with :func:`xafm.processing.run_as_playnano` (playNano's pipeline rules: a
mask step overlays the current mask, a levelling step uses it, ``clear`` ends it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import xafm
from tests import playnano_ref
from xafm import processing


@pytest.fixture(scope="module")
def tilted_stack():
    rng = np.random.default_rng(12)
    yy, xx = np.mgrid[0:48, 0:64]
    frames = [a * xx + b * yy + c + rng.normal(0, 0.05, xx.shape) for a, b, c in rng.normal(0, 1, (4, 3))]
    return np.stack(frames)


@pytest.fixture(scope="module")
def particles():
    """Curved, tilted frames with row offsets, noise and a few particles; 40 x 56 pixels, so
    mask_adaptive's tiles do not divide the frame."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:40, 0:56].astype(float)
    frames = []
    for _ in range(3):
        a, b, c, d = rng.normal(0, 0.05, 4)
        f = a * xx + b * yy + c * (xx - 20) ** 2 / 50 + d * xx * yy / 50 + rng.normal(0, 0.1, xx.shape)
        f += rng.normal(0, 0.3, (40, 1))
        for cy, cx in rng.uniform(5, 35, (3, 2)):
            f += 2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
        frames.append(f)
    return np.stack(frames)


def _value(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _xafm_pipeline(da, pipeline: str):
    """A playNano pipeline string run with xafm's steps, by playNano's rules."""
    for segment in filter(None, (s.strip() for s in pipeline.split(";"))):
        name, _, args = segment.partition(":")
        kwargs = {k.strip(): _value(v.strip()) for k, v in (a.split("=") for a in args.split(",") if a.strip())}
        da = processing.run_as_playnano(da, name.strip(), **kwargs)
    return da


@pytest.mark.parametrize("pipeline", ["remove_plane", "remove_plane; row_median_align"])
def test_levelling_matches_playnano(tilted_stack, pipeline):
    theirs = playnano_ref.run_pipeline(tilted_stack, pipeline, pixel_size_nm=0.5)
    da = xafm.stack(tilted_stack, pixel_size_nm=0.5)
    for name in (s.strip() for s in pipeline.split(";")):
        da = xafm.processing.run(da, "align_rows" if name == "row_median_align" else name)
    np.testing.assert_allclose(da.values, theirs["data"], rtol=0, atol=1e-9)


FILTERS = "remove_plane; polynomial_flatten; polynomial_flatten:order=3; row_median_align; zero_mean; zero_median; gaussian_filter:sigma=1.5; vertical_flip; gaussian_filter"


def test_every_filter_matches_playnano_step_by_step(particles):
    theirs = playnano_ref.run_pipeline(particles, FILTERS)
    names = [s.strip() for s in FILTERS.split(";")]
    before = particles
    for i, segment in enumerate(names, start=1):
        key = f"step_{i}_{segment.split(':')[0]}"
        # each step from the same input as playNano's: its previous step's output
        ours = _xafm_pipeline(xafm.stack(before, pixel_size_nm=1.0), segment).values
        np.testing.assert_allclose(ours, theirs["processed"][key], rtol=0, atol=1e-9, err_msg=segment)
        before = theirs["processed"][key]
    np.testing.assert_allclose(_xafm_pipeline(xafm.stack(particles, pixel_size_nm=1.0), FILTERS).values, theirs["data"], atol=1e-9)


MASKS = (
    "mask_threshold:threshold=0.8; clear; mask_below_threshold:threshold=-0.2; clear; mask_mean_offset:factor=1.2; clear; "
    "mask_morphological:threshold=0.9,structure_size=3; clear; mask_morphological:threshold=0.5,structure_size=5; clear; "
    "mask_adaptive; clear; mask_adaptive:block_size=8,offset=0.1; clear; mask_threshold; mask_below_threshold:threshold=-0.3"
)


def test_every_mask_matches_playnano(particles):
    data = xafm.stack(particles, pixel_size_nm=1.0).afm.remove_plane().values
    theirs = playnano_ref.run_pipeline(data, MASKS)
    ours = _xafm_pipeline(xafm.stack(data, pixel_size_nm=1.0), MASKS)
    assert set(ours.afm.masks) == set(theirs["masks"])  # the same keys, overlays named alike
    assert "step_16_mask_threshold_mask_below_threshold" in theirs["masks"]
    for key, want in theirs["masks"].items():
        got = ours.afm.masks[key].values
        assert got.dtype == bool and want.any() and not want.all(), key
        np.testing.assert_array_equal(got, want, err_msg=key)


MASKED = "mask_threshold:threshold=0.8; remove_plane; polynomial_flatten; row_median_align; zero_mean; zero_median; gaussian_filter; clear; zero_mean"


def test_masked_levelling_matches_playnano(particles):
    theirs = playnano_ref.run_pipeline(particles, MASKED)
    names = [s.strip() for s in MASKED.split(";")]
    mask = theirs["masks"]["step_1_mask_threshold"]
    assert mask.any() and not mask.all()
    before = particles
    for i, segment in enumerate(names, start=1):
        key = f"step_{i}_{segment.split(':')[0]}"
        if key not in theirs["processed"]:
            continue  # the mask step and clear
        da = xafm.stack(before, pixel_size_nm=1.0).afm.with_mask("m", mask)
        ours = _xafm_pipeline(da, segment if i < 8 else f"clear; {segment}").values
        np.testing.assert_allclose(ours, theirs["processed"][key], rtol=0, atol=1e-9, err_msg=segment)
        before = theirs["processed"][key]
    whole = _xafm_pipeline(xafm.stack(particles, pixel_size_nm=1.0), MASKED)
    np.testing.assert_allclose(whole.values, theirs["data"], atol=1e-9)
    params = [r["params"] for r in whole.afm.provenance if r.get("type") == "step"]
    assert [p["mask"] for p in params[:5]] == ["step_1_mask_threshold"] * 5  # recorded by name, not "latest"
    assert "mask" not in params[5] and params[6]["mask"] is None  # gaussian_filter takes none; after clear, none
    steps = json.loads(theirs["provenance"])["steps"]
    assert [s["name"] for s in steps] == [s.split(":")[0] for s in names]


def test_nan_pixels_differ_from_playnano_as_documented(tilted_stack):
    """docs/processing.md: playNano's fits fail on a frame with NaN and keep it as it was
    (its median and mean filters turn it all NaN); xafm leaves the NaN pixels out."""
    data = tilted_stack.copy()
    data[1, 3, 5] = np.nan
    theirs = playnano_ref.run_pipeline(data, "remove_plane")["data"]
    np.testing.assert_array_equal(theirs[1], data[1])  # playNano: frame 1 not levelled
    ours = xafm.stack(data, pixel_size_nm=1.0).afm.remove_plane().values
    clean = xafm.stack(np.nan_to_num(data, nan=0.0), pixel_size_nm=1.0).afm.remove_plane().values
    np.testing.assert_allclose(ours[[0, 2, 3]], theirs[[0, 2, 3]], atol=1e-9)  # other frames identical
    assert np.isnan(ours[1, 3, 5]) and np.nanstd(ours[1]) < 0.1 < np.std(clean[1])  # levelled, NaN left out
    rows = playnano_ref.run_pipeline(data, "row_median_align; zero_mean")["data"]
    assert np.isnan(rows[1]).all()
    ours = xafm.stack(data, pixel_size_nm=1.0).afm.row_median_align().afm.zero_mean().values
    assert np.count_nonzero(np.isnan(ours)) == 1 and abs(np.nanmean(ours[1])) < 1e-12


def test_too_few_pixels_and_bad_parameters_differ_as_documented(tilted_stack):
    """docs/processing.md: where the mask leaves fewer pixels than the plane has terms,
    playNano keeps the frame as it was and xafm fits the minimum-norm plane; a bad order is
    a logged no-op in playNano and an error in xafm."""
    data = tilted_stack[:2]
    # mask everything but two pixels of frame 0 (values below the threshold stay unmasked)
    low = data.copy()
    low[0] = 10.0
    low[0, 0, :2] = -10.0
    low[1] -= 100.0  # frame 1: nothing masked
    theirs = playnano_ref.run_pipeline(low, "mask_threshold:threshold=0; remove_plane")
    np.testing.assert_array_equal(theirs["data"][0], low[0])  # playNano: frame left as it was
    ours = _xafm_pipeline(xafm.stack(low, pixel_size_nm=1.0), "mask_threshold:threshold=0; remove_plane").values
    np.testing.assert_allclose(ours[0, 0, :2], 0.0, atol=1e-9)  # the two pixels lie on the fitted plane
    np.testing.assert_allclose(ours[1], theirs["data"][1], atol=1e-9)  # frame 1, a full fit: identical
    unchanged = playnano_ref.run_pipeline(data, "polynomial_flatten:order=0")["data"]
    np.testing.assert_array_equal(unchanged, data)
    with pytest.raises(xafm.StackError, match="positive integer"):
        _xafm_pipeline(xafm.stack(data, pixel_size_nm=1.0), "polynomial_flatten:order=0")


_SIGNATURES = r"""
import inspect, json
from playnano.processing import filters, mask_generators
out = {}
for registry in (filters.register_filters(), mask_generators.register_masking()):
    for name, fn in registry.items():
        params = list(inspect.signature(fn).parameters.values())[1:]
        out[name] = {p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in params}
print(json.dumps(out))
"""


def test_the_catalogue_has_playnanos_names_parameters_and_defaults():
    import subprocess

    exe = playnano_ref.require()
    done = subprocess.run([exe, "-c", _SIGNATURES], capture_output=True, text=True, timeout=300, check=True)
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(theirs) == 12
    steps = processing.catalogue()
    for name, params in theirs.items():
        ours = steps[name].parameters()
        for pname, default in params.items():
            assert pname in ours, f"{name}: no parameter {pname}"
            assert ours[pname].default == default, f"{name}.{pname}: default {ours[pname].default!r}, playNano {default!r}"
        # xafm's own extras are keyword-only, so playNano's positional order is kept
        positional = [p for p in ours.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert [p.name for p in positional] == list(params), name


@pytest.mark.parametrize(
    "text",
    ["mask_threshold:threshold=0.5; remove_plane; clear; row_median_align", "mask_threshold:threshold=1; mask_below_threshold:threshold=-1; polynomial_flatten:order=2; zero_mean"],
)
def test_a_whole_pipeline_string_matches_playnano(text):
    """The pipeline runner (what ``xafm process --processing`` runs) gives playNano's
    numbers for the same string: masks overlaid, levelling fitted around them, ``clear``.
    Particles (5 high) and pits on a gently tilted, curved background: the masks leave
    most of every frame to fit, so the fits are well posed."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:48, 0:64]
    frames = []
    for _ in range(4):
        a, b, c = rng.normal(0, 0.01, 3)
        z = a * xx + b * yy + c * ((xx - 32) ** 2) / 100 + rng.normal(0, 0.05, xx.shape)
        for cy, cx, h in zip(rng.integers(5, 43, 4), rng.integers(5, 59, 4), (5.0, 5.0, -5.0, 5.0)):
            z += h * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
        frames.append(z)
    stack = np.stack(frames)
    theirs = playnano_ref.run_pipeline(stack, text, pixel_size_nm=0.5)
    ours = xafm.processing.run_pipeline(xafm.stack(stack, pixel_size_nm=0.5), text)
    np.testing.assert_allclose(ours.values, theirs["data"], rtol=0, atol=1e-9)
    assert sorted(xafm.core.model.masks(ours)) == sorted(theirs["masks"])
# --------------------------------------------------------------------------------------
# drift correction and stack edits
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drifting_stack():
    """Frames cut from one smooth texture at known integer offsets (plus a sub-pixel
    variant): the drift both tools should find."""
    from scipy.ndimage import gaussian_filter, shift

    big = gaussian_filter(np.random.default_rng(7).normal(size=(120, 130)), 1.5)
    applied = np.array([[0, 0], [1, -2], [3, 1], [-2, 4], [0, 1], [-5, 6]])
    integer = np.stack([np.roll(big, tuple(-t), axis=(0, 1))[20:84, 20:100] for t in applied])
    frac = applied + np.array([[0, 0], [0.3, -0.2], [0.25, 0.35], [-0.3, 0.1], [0.2, 0.2], [-0.1, -0.3]])
    subpixel = np.stack([shift(big, -t, order=3, mode="wrap")[20:84, 20:100] for t in frac])
    return integer, subpixel, frac


def _placement(aligned: np.ndarray) -> np.ndarray:
    """Each frame's (row, column) offset on a padded canvas: its first finite pixel."""
    out = []
    for f in aligned:
        rows, cols = np.flatnonzero(np.isfinite(f).any(axis=1)), np.flatnonzero(np.isfinite(f).any(axis=0))
        out.append((rows[0], cols[0]))
    return np.asarray(out, dtype=float)


@pytest.mark.parametrize(
    "pipeline",
    [
        "align_frames",
        "align_frames:max_shift=4",
        "align_frames:max_shift=8,max_jump=2",
        "align_frames:reference_frame=2,mode=crop",
        "align_frames:mode=crop_square,pre_filter_sigma=1.0",
        "align_frames:method=full_cross_correlation,max_shift=6",
        "rolling_frame_align:window=3",
        "rolling_frame_align:window=2,mode=crop,max_shift=7",
        "align_frames; intersection_crop",
        "align_frames; intersection_crop:pad=2",
        "align_frames; crop_square",
        "align_frames; replace_nan",
        "align_frames; replace_nan:mode=mean",
        "align_frames; replace_nan:mode=median",
        "align_frames; replace_nan:mode=global_mean",
        "align_frames; replace_nan:mode=constant,value=-1.5",
    ],
)
def test_integer_alignment_and_crops_match_playnano(drifting_stack, pipeline):
    """With ``subpixel=False`` xafm measures playNano's integer shifts and places the frames
    as it does: the same numbers (playNano computes in float32)."""
    frames = drifting_stack[0]
    theirs = playnano_ref.run_pipeline(frames, pipeline, pixel_size_nm=1.0)
    da = xafm.stack(frames, pixel_size_nm=1.0)
    for part in (p.strip() for p in pipeline.split(";")):
        name, _, args = part.partition(":")
        params = {}
        for pair in filter(None, args.split(",")):
            key, value = pair.split("=")
            params[key] = float(value) if "." in value else int(value) if value.lstrip("-").isdigit() else value
        if name in ("align_frames", "rolling_frame_align"):
            params["subpixel"] = False
        da = xafm.processing.run(da, name, **params)
    assert da.shape == theirs["data"].shape
    np.testing.assert_allclose(da.values, theirs["data"], rtol=1e-5, atol=1e-6, equal_nan=True)


def test_subpixel_alignment_agrees_with_playnano_to_the_rounding(drifting_stack):
    """By default xafm keeps the fraction playNano rounds away: its shifts lie within half a
    pixel (plus the 0.1 px accuracy) of playNano's integer ones, and nearer the truth."""
    _, frames, truth = drifting_stack
    theirs = playnano_ref.run_pipeline(frames, "align_frames", pixel_size_nm=1.0)
    placed = _placement(theirs["data"])
    their_shifts = placed - placed[0]
    ours = xafm.processing.align_frames(xafm.stack(frames, pixel_size_nm=1.0))
    our_shifts = np.column_stack([ours.align_shift_y_nm.values, ours.align_shift_x_nm.values])
    assert np.all(np.abs(our_shifts - their_shifts) <= 0.6)
    np.testing.assert_allclose(our_shifts, truth, atol=0.1)
    assert np.abs(our_shifts - truth).max() < np.abs(their_shifts - truth).max()


@pytest.mark.parametrize(
    ("pipeline", "steps"),
    [
        ("drop_frame_range:start=1,end=4", [("drop_frame_range", {"start": 1, "end": 4})]),
        ("drop_final_frames:n_frames_to_drop=2", [("drop_final_frames", {"n_frames_to_drop": 2})]),
        ("drop_final_frames", [("drop_final_frames", {})]),
    ],
)
def test_frame_edits_match_playnano(drifting_stack, pipeline, steps):
    """(playNano's drop_frames and select_frames take lists, which its pipeline strings
    cannot spell; tests/test_edits.py checks them against isel.)"""
    frames = drifting_stack[0]
    times = np.linspace(0.0, 1.0, frames.shape[0])
    theirs = playnano_ref.run_pipeline(frames, pipeline, pixel_size_nm=1.0, timestamps=times)
    da = xafm.stack(frames, pixel_size_nm=1.0, times=times)
    for name, params in steps:
        da = xafm.processing.run(da, name, **params)
    np.testing.assert_array_equal(da.values, theirs["data"])
    np.testing.assert_array_equal(da.time.values, theirs["timestamps"])
