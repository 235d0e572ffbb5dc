"""Running work on frames in order, a few at a time, and reporting progress.

numpy, zlib and ffmpeg release the GIL, so a small thread pool overlaps rendering with
encoding; a bounded window keeps memory at a few frames.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.blocks import workers


def block_bytes() -> int:
    """``xafm.render.RENDER_BLOCK_BYTES``, read at call time so that setting it on the
    package (to trade memory for fewer, larger blocks) takes effect everywhere."""
    from . import RENDER_BLOCK_BYTES

    return int(RENDER_BLOCK_BYTES)


def map_ordered(func: Callable[[Any], Any], items: Iterable[Any], *, n_workers: int | None = None, window: int | None = None) -> Generator[Any, None, None]:
    """``map(func, items)`` on a thread pool, in order, with at most ``window`` in flight.

    numpy, zlib and ffmpeg release the GIL, so rendering overlaps encoding; the window
    bounds memory to a few frames.
    """
    n_workers = workers() if n_workers is None else n_workers
    window = 2 * n_workers if window is None else window
    if n_workers <= 1:
        yield from map(func, items)
        return
    with ThreadPoolExecutor(n_workers) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


class Progress:
    """``progress=True`` prints to stderr; a callable gets ``(done, total)``."""

    def __init__(self, progress: Any, total: int, what: str):
        self.total, self.what, self.done = total, what, 0
        self.callback = progress if callable(progress) else None
        self.text = bool(progress) and self.callback is None
        self._last = -1

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)
        elif self.text:
            pct = int(100 * self.done / max(1, self.total))
            if pct != self._last or self.done == self.total:
                self._last = pct
                sys.stderr.write(f"\r{self.what}: {self.done}/{self.total} frames ({pct}%)")
                if self.done >= self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()
