"""What the command line says: errors as ``xafm: error: ...`` (exit 2), warnings as one
``warning: ...`` line, both in the command line's words rather than Python's."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

#: Python spellings in library messages and what the command line calls them.
CLI_WORDS = (
    (re.compile(r"pass overwrite=True"), "use --overwrite"),
    (re.compile(r"overwrite=True"), "--overwrite"),
    (re.compile(r"scale_bar_nm='auto'"), "--scale-bar-nm auto"),
    (re.compile(r"scale_bar_nm=None"), "--scale-bar-nm auto"),
    (re.compile(r"\bscale_bar_nm\b"), "--scale-bar-nm"),
    (re.compile(r"(?<!-)\bzmin\b"), "--zmin"),
    (re.compile(r"(?<!-)\bzmax\b"), "--zmax"),
    (re.compile(r"pass channel=(\S+)"), r"use --channel \1"),
    (re.compile(r"\bchannel=(?=['\"])"), "--channel "),
)


def in_cli_words(text: str) -> str:
    """A library message with its Python spellings replaced by the command line's flags,
    on one line."""
    text = " ".join(str(text).split())
    for pattern, words in CLI_WORDS:
        text = pattern.sub(words, text)
    return text


def error(message: Any, stream: TextIO | None = None) -> int:
    """Print ``xafm: error: MESSAGE``; the exit status of a failed command (2)."""
    print(f"xafm: error: {in_cli_words(str(message))}", file=stream or sys.stderr)
    return 2


@contextmanager
def one_line_warnings(stream: TextIO | None = None) -> Iterator[None]:
    """Show every warning as ``warning: MESSAGE`` (once each), without source lines."""
    seen: set[str] = set()

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = in_cli_words(str(message))
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=stream or sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


class Parser(argparse.ArgumentParser):
    """argparse with xafm's error line: the usage, then ``xafm: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"xafm: error: {message}\n")
