"""Writers of synthetic instrument files, for tests and benchmarks: one module per format.

xafm only reads vendor formats; these writers exist so that tests can build files of any
size and shape (long videos, several channels, every file version, damaged headers)
without shipping large binaries. They follow the layouts in ``docs/formats.md``; the
test suite and ``bench/`` take every synthetic file from here.
"""

from __future__ import annotations

from .asd import ASD_TEXT_CODECS, write_asd
from .h5jpk import write_h5jpk

__all__ = ["ASD_TEXT_CODECS", "write_asd", "write_h5jpk"]
