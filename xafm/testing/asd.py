"""Synthetic RIBM / Kanazawa ``.asd`` videos (file versions 0, 1 and 2), as ``docs/formats.md`` describes them."""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: text-encoding number in a v1/v2 ``.asd`` header -> Python codec used to write the strings
ASD_TEXT_CODECS = {932: "cp932", 65001: "utf-8", 20127: "ascii", 20932: "euc_jp", 1200: "utf-16-le"}

_ASD_FRAME_HEADER = np.dtype(
    [
        ("frame_number", "<i4"), ("max_data", "<i2"), ("min_data", "<i2"),
        ("x_offset", "<i2"), ("y_offset", "<i2"), ("x_tilt", "<f4"), ("y_tilt", "<f4"),
        ("is_stimulated", "u1"), ("booked1", "i1"), ("booked2", "<i2"), ("booked3", "<i4"), ("booked4", "<i4"),
    ]
)


def _levels(frames: Any, what: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"{what} must be (frames, y, x) with at least one frame, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integer A/D levels, got dtype {arr.dtype}")
    if arr.size and (arr.min() < -32768 or arr.max() > 32767):
        raise ValueError(f"{what} levels must fit int16")
    return arr.astype("<i2", copy=False)


def _frames_block(levels: np.ndarray, frame_header_length: int, x_tilt: Any, y_tilt: Any) -> np.ndarray:
    """Frame headers + levels of one channel as one structured array (written in one go)."""
    n, ny, nx = levels.shape
    extra = frame_header_length - _ASD_FRAME_HEADER.itemsize
    fields: list[tuple] = [("hdr", _ASD_FRAME_HEADER)]
    if extra:
        fields.append(("pad", f"V{extra}"))
    fields.append(("data", "<i2", (ny, nx)))
    block = np.zeros(n, dtype=np.dtype(fields))
    hdr = block["hdr"]
    hdr["frame_number"] = np.arange(1, n + 1)
    flat = levels.reshape(n, -1)
    hdr["max_data"] = flat.max(axis=1)
    hdr["min_data"] = flat.min(axis=1)
    hdr["x_tilt"] = np.broadcast_to(np.asarray(x_tilt, dtype="<f4"), (n,))
    hdr["y_tilt"] = np.broadcast_to(np.asarray(y_tilt, dtype="<f4"), (n,))
    block["data"] = levels
    return block


def _code(code: str | None, size: int) -> bytes:
    raw = (code or "").encode("ascii")
    if len(raw) > size:
        raise ValueError(f"channel code {code!r} longer than {size} bytes")
    return raw.ljust(size, b"\0")


def write_asd(
    path: str | os.PathLike,
    frames_int16: Any,
    *,
    version: int = 1,
    frame_time_ms: float = 100.0,
    x_nm: int | None = None,
    y_nm: int | None = None,
    channel: str = "TP",
    ad_range: int = 0x3,
    ad_bits: int = 12,
    z_gain: float = 2.0,
    z_extension: float = 10.0,
    scanner_sensitivity: float = 1.0,
    phase_sensitivity: float = 1.0,
    second_channel: tuple[str, Any] | None = None,
    date: Sequence[int] = (2017, 11, 21, 13, 12, 39),
    user: str = "xafm",
    comment: str = "",
    text_encoding: int = 932,
    scan_direction: int = 1,
    num_frames: int | None = None,
    header_length: int | None = None,
    frame_header_length: int = 32,
    x_tilt: Any = 0.0,
    y_tilt: Any = 0.0,
    anchors: tuple[int, int, int] = (0, 0, 0),
    comment_offset_size: int = 0,
) -> Path:
    """Write a valid ``.asd`` file (version 0, 1 or 2) holding the given int16 levels.

    Parameters
    ----------
    frames_int16
        Channel 1 levels, (frames, y, x) (or one (y, x) frame), integers within int16.
    channel, second_channel
        Channel 1 code (``"TP"``, ``"ER"``, ``"PH"``) and optionally ``(code, levels)`` of a
        second channel of the same shape, stored after all channel-1 frames.
    x_nm, y_nm
        Scan size in nm (integers in the file); default one nm per pixel.
    ad_range, ad_bits, z_gain, z_extension, scanner_sensitivity, phase_sensitivity
        What the reader's level-to-value conversion uses (floats are stored as float32).
    num_frames, header_length
        Override what the header claims (to build lying or damaged headers); by default the
        true frame count and header length.
    anchors
        Version 2 only: the counts of red, green and blue colour anchors to write.
    """
    if version not in (0, 1, 2):
        raise ValueError(f"version must be 0, 1 or 2, got {version!r}")
    ch1 = _levels(frames_int16, "frames_int16")
    chans = [(channel, ch1)]
    if second_channel is not None:
        code2, lv2 = second_channel
        lv2 = _levels(lv2, "second_channel levels")
        if lv2.shape != ch1.shape:
            raise ValueError(f"second channel has shape {lv2.shape}, channel 1 has {ch1.shape}")
        chans.append((code2, lv2))
    n, ny, nx = ch1.shape
    x_nm = nx if x_nm is None else int(x_nm)
    y_nm = ny if y_nm is None else int(y_nm)
    n_hdr = n if num_frames is None else int(num_frames)
    codec = ASD_TEXT_CODECS.get(text_encoding, "cp932") if version else "cp932"
    user_b = user.encode(codec)
    comment_b = comment.encode(codec)
    year, month, day, hour, minute, second = (int(v) for v in date)
    second_code = chans[1][0] if len(chans) > 1 else None

    if version == 0:
        length = 105 + len(user_b) + 12 + comment_offset_size + len(comment_b)
        head = struct.pack(
            "<i2s2s5i4h3fIiBihh6B2f3i3ih",
            0, _code(channel, 2), _code(second_code, 2), length if header_length is None else header_length,
            frame_header_length, len(user_b), comment_offset_size, len(comment_b), nx, ny, x_nm, y_nm,
            frame_time_ms, z_extension, z_gain, ad_range, ad_bits, 0, 1, 0, year, month, day, hour, minute,
            second, 0, float(x_nm), float(y_nm), 0, 0, 0, n_hdr, n_hdr, 0, 0,
        )
        head += user_b + struct.pack("<2fi", scanner_sensitivity, phase_sensitivity, scan_direction)
        head += b"\0" * comment_offset_size + comment_b
    else:
        tail = b""
        if version == 2:
            tail = struct.pack("<iid2i3i", n_hdr, 0, 0.0, 255, 0, *anchors)
            tail += np.arange(2 * sum(anchors), dtype="<i4").tobytes()
        length = 165 + len(user_b) + len(comment_b) + len(tail)
        head = struct.pack(
            "<6i4s4s8iBi6i2i3fi12xiIi2f4f",
            version, length if header_length is None else header_length, frame_header_length, text_encoding,
            len(user_b), len(comment_b), _code(channel, 4), _code(second_code, 4), n_hdr, n_hdr, scan_direction, 0,
            nx, ny, x_nm, y_nm, 0, 1, year, month, day, hour, minute, second, 0, 0, frame_time_ms,
            scanner_sensitivity, phase_sensitivity, 0, 0, ad_range, ad_bits, float(x_nm), float(y_nm),
            1.0, 1.0, z_extension, z_gain,
        )
        head += user_b + comment_b + tail
    assert len(head) == length
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(head)
        for _, levels in chans:
            _frames_block(levels, frame_header_length, x_tilt, y_tilt).tofile(fh)
    return path
