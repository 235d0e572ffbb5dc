"""Choosing a channel by name, the same way in every reader."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from ..exceptions import ChannelError

T = TypeVar("T")


def pick_channel(path: str, available: Mapping[str, T], requested: str | None, defaults: Iterable[str] = ()) -> T:
    """The channel ``requested`` (exact name first, then any case); with None the first of
    ``defaults`` the file holds, else its first channel. Unknown names raise
    ``ChannelError`` listing what the file holds."""
    if not available:
        raise ChannelError(f"{path}: the file holds no channels")
    if requested is None:
        for name in defaults:
            if name in available:
                return available[name]
        return next(iter(available.values()))
    if requested in available:
        return available[requested]
    # other readers (AFMReader) lower-case the names: accept any case when unambiguous
    folded = [c for n, c in available.items() if n.lower() == str(requested).lower()]
    if len(folded) == 1:
        return folded[0]
    raise ChannelError(f"{path}: no channel {requested!r}; available: {list(available)}")
