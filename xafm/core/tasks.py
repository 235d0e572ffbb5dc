"""Running a writer's dask computations so that none of their tasks outlives the call.

A writer writes into a temporary file or folder that :func:`xafm.core.output.atomic_output`
removes when the writer's body fails. dask's own ``compute`` returns at the first failure
(a task's exception, a Ctrl-C in the calling thread) while the other tasks keep running
on its threads; a task that writes (an OME-Zarr chunk) then recreates the temporary
folder after its removal, and one that only computes still holds files and memory after
the writer has returned. :func:`compute` is the one place writers compute dask
collections: on any failure it stops the tasks not started yet and waits for the ones
running before the failure propagates.

- threaded scheduler (dask's default): the tasks run on a pool of xafm's own, shut down
  with ``cancel_futures=True`` and waited for (a pool configured with
  ``dask.config.set(pool=...)`` is kept, and the tasks submitted to it are waited for);
- ``dask.distributed`` (a Client active): the Client releases the keys of a failed compute
  (so tasks not started never start); xafm then waits until no worker runs one of them;
- the synchronous scheduler runs in the calling thread: nothing outlives it. (dask's
  multiprocessing scheduler shuts the pool it made down, waiting for the tasks it
  submitted, before it returns; xafm adds nothing to it.)
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing.pool
import time
from collections.abc import Callable, Sequence
from typing import Any

#: Seconds between two looks at the workers while waiting for a failed compute's tasks.
POLL_S = 0.05


def _dask() -> Any:
    """dask with its schedulers (untyped: the calls into it are checked by the tests)."""
    import dask
    import dask.base
    import dask.local
    import dask.system
    import dask.threaded

    return dask


class _Tracked:
    """A pool someone else owns, with the futures this compute submitted to it recorded."""

    def __init__(self, pool: Any):
        self.pool = pool
        self._max_workers = pool._max_workers
        self.futures: list[concurrent.futures.Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = self.pool.submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future

    def stop(self) -> None:
        """Cancel what has not started; wait for what runs."""
        for f in self.futures:
            f.cancel()
        concurrent.futures.wait(self.futures)


def _own_pool(num_workers: int) -> concurrent.futures.ThreadPoolExecutor:
    import dask.threaded

    cls = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", concurrent.futures.ThreadPoolExecutor)
    return cls(num_workers)


def _threaded(collections: Sequence[Any], scheduler: Any) -> tuple[Any, ...]:
    dask = _dask()
    configured = dask.config.get("pool", None)
    if configured is not None:
        if isinstance(configured, multiprocessing.pool.Pool):
            configured = dask.local.MultiprocessingPoolExecutor(configured)
        tracked = _Tracked(configured)
        try:
            return tuple(dask.compute(*collections, scheduler=scheduler, pool=tracked))
        finally:
            tracked.stop()
    pool = _own_pool(dask.config.get("num_workers", None) or dask.system.CPU_COUNT)
    try:
        return tuple(dask.compute(*collections, scheduler=scheduler, pool=pool))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _keys(collections: Sequence[Any]) -> set[str]:
    out: set[str] = set()
    for c in collections:
        graph = c.__dask_graph__()
        out.update(str(k) for k in graph.keys())
    return out


def _running(dask_worker: Any) -> list[str]:
    """On a worker: the keys of the tasks it is executing (cancelled ones included)."""
    state = getattr(dask_worker, "state", None)
    running = getattr(state, "all_running_tasks", None)
    return [str(ts.key) for ts in running] if running is not None else []


def wait_on_workers(client: Any, keys: set[str]) -> None:
    """Return once no worker of ``client`` executes a task whose key is in ``keys``."""
    while True:
        try:
            busy = client.run(_running)
        except Exception:  # the cluster is gone (or never answers): nothing runs for us
            return
        if not any(keys.intersection(found) for found in busy.values()):
            return
        time.sleep(POLL_S)


def _client_of(scheduler: Any) -> Any:
    owner = getattr(scheduler, "__self__", None)
    return owner if type(owner).__name__ == "Client" and hasattr(owner, "run") else None


def compute(*collections: Any) -> tuple[Any, ...]:
    """``dask.compute(*collections)``, returning or raising only when none of its tasks
    runs any more (see the module docstring for each scheduler)."""
    dask = _dask()
    scheduler = dask.base.get_scheduler(collections=collections)
    if scheduler is None or scheduler is dask.threaded.get:
        return _threaded(collections, dask.threaded.get)
    client = _client_of(scheduler)
    if client is None:
        return tuple(dask.compute(*collections))
    try:
        return tuple(dask.compute(*collections))
    except BaseException:
        wait_on_workers(client, _keys(collections))
        raise
