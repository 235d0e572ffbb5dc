"""Synthetic playNano bundles (``.npz``, ``.h5``, ``.ome.tif``), laid out as playNano's own
writers lay them out (``docs/formats.md``, HDF5 bundle, NPZ bundle and OME-TIFF sections),
not as xafm writes them: strings as pickled object arrays in ``.npz``, fixed-length bytes
in ``.h5``, a TCZYX OME-TIFF with the provenance in tag 65000."""

from __future__ import annotations

import json

import numpy as np


def playnano_provenance():
    """A playNano provenance object: environment, two processing steps (a ``remove_plane``
    filter and a ``mask_threshold`` mask, keys ``step_1_remove_plane`` and
    ``step_2_mask_threshold``) and an empty analysis."""
    return {
        "environment": {"timestamp": "2025-10-20T12:00:00Z", "python_version": "3.11", "playnano_version": "0.5.0"},
        "processing": {
            "steps": [
                {"index": 1, "name": "remove_plane", "params": {}, "timestamp": "2025-10-20T12:00:01Z", "step_type": "filter",
                 "version": "0.1.0", "function_module": "playnano.processing.filters", "processed_key": "step_1_remove_plane"},
                {"index": 2, "name": "mask_threshold", "params": {"threshold": 1.0}, "timestamp": "2025-10-20T12:00:02Z",
                 "step_type": "mask", "version": "0.1.0", "function_module": "playnano.processing.mask_generators",
                 "mask_key": "step_2_mask_threshold"},
            ],
            "keys_by_name": {"remove_plane": ["step_1_remove_plane"], "mask_threshold": ["step_2_mask_threshold"]},
        },
        "analysis": {"frame_times": None, "steps": [], "results_by_name": {}},
    }


def playnano_frame_metadata(n, *, pixel_size_nm=1.5):
    """playNano's per-frame dicts for ``n`` frames: ``timestamp`` 0.5 s apart,
    ``frame_pixel_size_nm`` and ``line_rate`` 100 lines/s."""
    return [{"timestamp": float(i) * 0.5, "frame_pixel_size_nm": pixel_size_nm, "line_rate": 100.0} for i in range(n)]


def write_playnano_npz(path, data, *, processed=None, masks=None, pixel_size_nm=1.5, channel="height_trace",
                       timestamps=None, frame_metadata=None, provenance=None, state_backups=None):
    """Write a playNano ``.npz`` bundle with ``np.savez_compressed`` (members deflated).

    The string members are 0-d object arrays (pickled in the file, as playNano writes them):
    ``channel``, ``frame_metadata_json`` and ``state_backups_json`` hold ``str``,
    ``provenance_json`` holds UTF-8 ``bytes``. ``pixel_size_nm`` is a 0-d float32.

    Parameters
    ----------
    path
        Where to write.
    data
        The (time, y, x) stack, member ``data``.
    processed, masks
        Optional ``{key: array}`` stored as ``processed__<key>`` and ``masks__<key>``.
    pixel_size_nm, channel
        ``pixel_size_nm`` and ``channel`` members.
    timestamps
        ``timestamps`` member; default 0.5 s apart.
    frame_metadata, provenance, state_backups
        JSON-able objects; default :func:`playnano_frame_metadata`,
        :func:`playnano_provenance` and ``{}``.
    """
    n = len(data)
    frames = playnano_frame_metadata(n, pixel_size_nm=pixel_size_nm) if frame_metadata is None else frame_metadata
    prov = playnano_provenance() if provenance is None else provenance
    np.savez_compressed(
        path,
        data=data,
        pixel_size_nm=np.array(pixel_size_nm, dtype=np.float32),
        channel=np.array(channel, dtype=object),
        frame_metadata_json=np.array(json.dumps(frames), dtype=object),
        provenance_json=np.array(json.dumps(prov).encode("utf-8"), dtype=object),
        state_backups_json=np.array(json.dumps({} if state_backups is None else state_backups), dtype=object),
        timestamps=np.arange(n) * 0.5 if timestamps is None else timestamps,
        **{f"processed__{k}": v for k, v in (processed or {}).items()},
        **{f"masks__{k}": v for k, v in (masks or {}).items()},
    )
    return path


def write_playnano_h5(path, data, *, processed=None, masks=None, pixel_size_nm=1.5, channel="height_trace",
                      timestamps=None, frame_metadata=None, provenance=None):
    """Write a playNano ``.h5`` bundle: gzip-compressed ``/data``, ``/processed/<key>`` and
    ``/masks/<key>``, ``/timestamps``, the JSON as fixed-length bytes datasets
    ``/frame_metadata_json`` and ``/provenance_json``, and root attributes ``pixel_size_nm``
    and ``channel`` (no dimension scales, no ``xafm_attrs_json``).

    Parameters
    ----------
    path
        Where to write.
    data
        The (time, y, x) stack.
    processed, masks
        Optional ``{key: array}``; a group is written only when given.
    pixel_size_nm, channel
        Root attributes.
    timestamps
        ``/timestamps``; default 0.5 s apart (float64).
    frame_metadata, provenance
        JSON-able objects; default :func:`playnano_frame_metadata` and :func:`playnano_provenance`.

    Notes
    -----
    Needs ``h5py`` (imported here, not when ``xafm.testing`` is imported).
    """
    import h5py

    n = len(data)
    frames = playnano_frame_metadata(n, pixel_size_nm=pixel_size_nm) if frame_metadata is None else frame_metadata
    prov = playnano_provenance() if provenance is None else provenance
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, compression="gzip")
        for group, members in (("processed", processed), ("masks", masks)):
            if members:
                g = f.create_group(group)
                for k, v in members.items():
                    g.create_dataset(k, data=v, compression="gzip")
        f.create_dataset("timestamps", data=np.arange(n) * 0.5 if timestamps is None else np.asarray(timestamps))
        f.create_dataset("frame_metadata_json", data=np.bytes_(json.dumps(frames)))
        f.create_dataset("provenance_json", data=np.bytes_(json.dumps(prov)))
        f.attrs["pixel_size_nm"] = pixel_size_nm
        f.attrs["channel"] = channel
    return path


def write_playnano_ome_tiff(path, data, *, pixel_size_nm=1.5, times=None, channel="height_trace", provenance=None,
                            layer_names=("raw",)):
    """Write a playNano OME-TIFF: ``tifffile.imwrite(..., ome=True)`` of a TCZYX float stack.

    Physical sizes are in µm, ``Plane DeltaT`` holds the frame times, private tag 65000
    (UNDEFINED) the provenance JSON and tag 65001 the JSON list of layer names followed by
    two NUL bytes (padding the reader must strip).

    Parameters
    ----------
    path
        Where to write; returned.
    data
        (T, C, Z, Y, X), or (T, Y, X) written as C = Z = 1.
    pixel_size_nm
        ``PhysicalSizeX`` and ``PhysicalSizeY`` (written as ``pixel_size_nm / 1000`` µm).
    times
        ``Plane DeltaT`` values, s; default 0.5 s apart.
    channel
        ``Channel Name``.
    provenance
        JSON-able object for tag 65000; default :func:`playnano_provenance`.
    layer_names
        The names listed in tag 65001.

    Notes
    -----
    Needs ``tifffile`` (imported here, not when ``xafm.testing`` is imported).
    """
    import tifffile

    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = arr[:, None, None]
    prov = json.dumps(playnano_provenance() if provenance is None else provenance).encode("utf-8")
    layers = json.dumps(list(layer_names)).encode("utf-8") + b"\0\0"
    size_um = pixel_size_nm / 1000
    tifffile.imwrite(
        path, arr, ome=True, photometric="minisblack",
        metadata={"axes": "TCZYX", "PhysicalSizeX": size_um, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": size_um,
                  "PhysicalSizeYUnit": "µm", "Plane": {"DeltaT": [float(i) * 0.5 for i in range(len(arr))] if times is None else list(times)},
                  "Channel": {"Name": channel}},
        extratags=[(65000, 7, len(prov), prov, True), (65001, 7, len(layers), layers, True)],
    )
    return path
