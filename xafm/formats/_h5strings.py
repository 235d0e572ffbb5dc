"""Reading an HDF5 file's attributes and small datasets so that no file can hang xafm.

Variable-length strings (and every other variable-length type) live in the file's global
heap. A damaged heap collection (a free-space object whose size does not advance the
walk over the collection, e.g. size 0) makes HDF5's C code loop forever the first time
any object of that collection is read; h5py opens such a file instantly and hangs on the
first string. Nothing in the HDF5 API bounds that loop, so xafm reads every value that
lives in the heap in a forked child process, all of a file's at once the first time one
is needed, and kills the child when one value takes longer than :data:`TIMEOUT_S` (the file is
then refused with a :class:`CorruptFileError`). Fixed-length strings and numbers are read
directly. xafm's own bundles store their JSON as fixed-length strings, so reading them
needs no child except for playNano's variable-length ``channel`` attribute.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
import warnings
from typing import Any

import numpy as np

from ..exceptions import CorruptFileError
from ._h5guard import check_stored, declared_bytes

#: A heap value whose read takes longer than this is a damaged heap (normal reads take
#: microseconds): the child is killed when no value arrives for this long.
TIMEOUT_S = 5.0
#: However many values a file holds, the child is killed after this long in all.
TOTAL_TIMEOUT_S = 60.0
#: No text value larger than this is read (metadata, not data).
MAX_TEXT_BYTES = 64 * 2**20
#: String datasets of at most this many elements are metadata whose heap values are read.
MAX_HEAP_ELEMENTS = 16
#: The child may grow by this much address space beyond the parent's.
CHILD_EXTRA_MEMORY = 2**30


def uses_heap(tid: Any) -> bool:
    """Whether values of an HDF5 type are (or hold) global-heap objects."""
    import h5py

    t = h5py.h5t
    if isinstance(tid, t.TypeStringID):
        return bool(tid.is_variable_str())
    if isinstance(tid, t.TypeVlenID):
        return True
    if isinstance(tid, t.TypeReferenceID):
        return tid.get_size() != 8 or not tid.equal(t.STD_REF_OBJ)  # region references live in the heap
    if isinstance(tid, t.TypeArrayID):
        return uses_heap(tid.get_super())
    if isinstance(tid, t.TypeCompoundID):
        return any(uses_heap(tid.get_member_type(i)) for i in range(tid.get_nmembers()))
    return False


def _is_vlen_text(tid: Any) -> bool:
    import h5py

    return isinstance(tid, h5py.h5t.TypeStringID) and bool(tid.is_variable_str())


# --------------------------------------------------------------------------------------
# the child
# --------------------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    if isinstance(value, str):
        return {"s": value}
    if isinstance(value, (bytes, np.bytes_)):
        return {"b": bytes(value).decode("latin-1")}
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return {"a": list(value.shape), "v": [_encode(v) for v in value.ravel().tolist()]}
    return None


def _decode(item: Any) -> Any:
    if "s" in item:
        return item["s"]
    if "b" in item:
        return item["b"].encode("latin-1")
    out = np.empty(len(item["v"]), dtype=object)
    out[:] = [_decode(v) for v in item["v"]]
    return out.reshape(item["a"])


def _read_one(f: Any, where: str, attr: str | None) -> Any:
    obj = f[where]
    return obj[()] if attr is None else obj.attrs[attr]


def _child(f: Any, items: list[tuple[str, str | None]], out: int) -> None:
    """In the forked child: read each item, write one JSON line per item."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + CHILD_EXTRA_MEMORY, size + CHILD_EXTRA_MEMORY))
    except (OSError, ValueError):
        pass
    with os.fdopen(out, "w", encoding="utf-8") as pipe:
        for where, attr in items:
            try:
                encoded = _encode(_read_one(f, where, attr))
                text = json.dumps({"v": encoded})
                if len(text) > 2 * MAX_TEXT_BYTES:
                    text = json.dumps({"e": f"more than {MAX_TEXT_BYTES} bytes of text"})
            except Exception as exc:
                text = json.dumps({"e": f"{type(exc).__name__}: {exc}"})
            pipe.write(text + "\n")
            pipe.flush()


def _what(where: str, attr: str | None) -> str:
    return f"attribute {attr!r} of {where}" if attr is not None else f"dataset {where}"


def read_in_child(f: Any, path: str, items: list[tuple[str, str | None]]) -> dict[tuple[str, str | None], Any]:
    """Read heap values ``(object, attribute or None for the dataset)`` in a forked child.

    Returns each item's value, or a :class:`CorruptFileError` for an item that failed or
    that the child did not reach, no value having come for :data:`TIMEOUT_S` (or after
    :data:`TOTAL_TIMEOUT_S` in all) (a damaged heap: every later item
    shares its fate, as heap collections are shared).
    """
    if not items:
        return {}
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: no bound available
        out: dict[tuple[str, str | None], Any] = {}
        for item in items:
            try:
                out[item] = _read_one(f, *item)
            except Exception as exc:
                out[item] = CorruptFileError(path, f"reading {_what(*item)} failed: {exc}")
        return out
    r, w = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns about fork with threads; the child only reads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(r)
            _child(f, items, w)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    lines: list[bytes] = []
    buf = b""
    start = time.monotonic()
    deadline = start + TIMEOUT_S
    timed_out = False
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                timed_out = True
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines.extend(done)
            if done:  # progress: the next value gets its own TIMEOUT_S, within the total
                deadline = min(time.monotonic() + TIMEOUT_S, start + TOTAL_TIMEOUT_S)
    finally:
        os.close(r)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    results: dict[tuple[str, str | None], Any] = {}
    for item, line in zip(items, lines):
        got = json.loads(line)
        if "e" in got:
            results[item] = CorruptFileError(path, f"reading {_what(*item)} failed: {got['e']}")
        else:
            results[item] = None if got["v"] is None else _decode(got["v"])
    if len(lines) < len(items):
        first = items[len(lines)]
        if timed_out and time.monotonic() - start >= TOTAL_TIMEOUT_S:
            why = f"reading its {len(items)} variable-length values did not finish in {TOTAL_TIMEOUT_S:g} s"
        elif timed_out:
            why = (
                f"reading {_what(*first)} did not finish in {TIMEOUT_S:g} s: the global heap that holds "
                "its variable-length values is damaged (HDF5 loops on it)"
            )
        else:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            why = f"reading {_what(*first)} ended the reading process" + (f" (signal {sig})" if sig else "")
        for item in items[len(lines) :]:
            results[item] = CorruptFileError(path, why)
    return results


# --------------------------------------------------------------------------------------
# what readers use
# --------------------------------------------------------------------------------------
class Values:
    """An open file's attributes and small datasets, read without risking a hang.

    Values that do not live in the global heap are read directly; the heap's are read once
    for the whole file (:func:`read_in_child`) the first time one is needed. Heap values
    other than strings (variable-length sequences, region references, dimension lists)
    are never read: :meth:`attrs` leaves them out.
    """

    def __init__(self, f: Any, path: str, members: list[str]):
        self.f, self.path, self.members = f, path, members
        self._heap: dict[tuple[str, str | None], Any] | None = None

    def _heap_value(self, where: str, attr: str | None) -> Any:
        if self._heap is None:
            self._heap = read_in_child(self.f, self.path, self._heap_items())
        got = self._heap.get((where, attr))
        if isinstance(got, CorruptFileError):
            raise got
        return got

    def _heap_items(self) -> list[tuple[str, str | None]]:
        import h5py

        items: list[tuple[str, str | None]] = []
        for name in ["/", *("/" + m for m in self.members)]:
            obj = self.f.get(name)
            if obj is None:
                continue
            for attr in self.attr_names(obj):
                if _is_vlen_text(obj.attrs.get_id(attr).get_type()):
                    items.append((obj.name, attr))
            if isinstance(obj, h5py.Dataset) and _is_vlen_text(obj.id.get_type()) and obj.size <= MAX_HEAP_ELEMENTS:
                items.append((obj.name, None))
        return items

    def attr_names(self, obj: Any) -> list[str]:
        return [k for k in obj.attrs if isinstance(k, str)]

    def attr(self, obj: Any, name: str, default: Any = None) -> Any:
        """One attribute's value (``default`` when absent or not a readable type)."""
        if name not in obj.attrs:
            return default
        tid = obj.attrs.get_id(name).get_type()
        if not uses_heap(tid):
            return obj.attrs[name]
        if not _is_vlen_text(tid):
            return default
        return self._heap_value(obj.name, name)

    def attrs(self, obj: Any) -> dict[str, Any]:
        """Every readable attribute of ``obj`` (heap values other than strings left out)."""
        out = {}
        for name in self.attr_names(obj):
            tid = obj.attrs.get_id(name).get_type()
            if not uses_heap(tid):
                out[name] = obj.attrs[name]
            elif _is_vlen_text(tid):
                out[name] = self._heap_value(obj.name, name)
        return out

    def value(self, ds: Any, *, limit: int = MAX_TEXT_BYTES) -> Any:
        """A small dataset's whole value: after the storage check, at most ``limit`` bytes;
        a variable-length string dataset through the heap read."""
        tid = ds.id.get_type()
        if _is_vlen_text(tid):
            if ds.size > MAX_HEAP_ELEMENTS:
                raise CorruptFileError(self.path, f"{ds.name} holds {ds.size} strings; xafm reads at most {MAX_HEAP_ELEMENTS}")
            return self._heap_value(ds.name, None)
        if uses_heap(tid):
            raise CorruptFileError(self.path, f"{ds.name} has a variable-length type xafm does not read")
        check_stored(ds, self.path)
        if declared_bytes(ds) > limit:
            raise CorruptFileError(self.path, f"{ds.name} declares {declared_bytes(ds)} bytes; xafm reads at most {limit} here")
        return ds[()]
