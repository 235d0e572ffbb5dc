"""Real servers on 127.0.0.1 for the remote tests: an S3 server (moto's, in server mode)
and an HTTP file server that honours ``Range``, both counting the requests they answer.

Both run in a thread of the test process and listen on a free port of the loopback
interface only; a dask worker in another process reaches them as any client would.
``requests`` holds one :class:`Request` per answered request (method, path, the byte
range asked for), so a test can say how many requests and bytes a lazy open cost.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    #: ``(first, last)`` byte of a ``Range: bytes=first-last`` request (last None: to the end)
    range: tuple[int, int | None] | None
    #: body bytes sent back (for GET) or received (for PUT/POST)
    nbytes: int


def _parse_range(header: str | None) -> tuple[int, int | None] | None:
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or not m.group(1):
        return None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) else None)


class _Log:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []

    def add(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()


class _RangeHandler(SimpleHTTPRequestHandler):
    """Python's file server, plus single byte ranges (``206 Partial Content``), which
    fsspec's HTTP file system needs to read parts of a file."""

    log: _Log

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        wanted = _parse_range(self.headers.get("Range"))
        path = self.translate_path(self.path)
        if wanted is None or not os.path.isfile(path):
            self._send_whole(path)
            return
        size = os.path.getsize(path)
        first, last = wanted
        last = size - 1 if last is None or last >= size else last
        if first >= size:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.log.add(Request("GET", self.path, wanted, 0))
            self.end_headers()
            return
        with open(path, "rb") as fh:
            fh.seek(first)
            body = fh.read(last - first + 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.log.add(Request("GET", self.path, wanted, len(body)))
        self.wfile.write(body)

    def _send_whole(self, path: str) -> int:
        if not os.path.isfile(path):
            self.log.add(Request("GET", self.path, None, 0))
            super().do_GET()
            return 0
        with open(path, "rb") as fh:
            body = fh.read()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.log.add(Request("GET", self.path, None, len(body)))
        self.wfile.write(body)
        return len(body)

    def do_HEAD(self) -> None:
        self.log.add(Request("HEAD", self.path, None, 0))
        path = self.translate_path(self.path)
        if os.path.isfile(path):
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(os.path.getsize(path)))
            self.end_headers()
        else:
            super().do_HEAD()


class _Served:
    """A server in a thread of this process, and the requests it answered."""

    _log: _Log
    _server: Any
    _thread: threading.Thread

    @property
    def requests(self) -> list[Request]:
        return self._log.requests

    def clear(self) -> None:
        self._log.clear()

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class HttpServer(_Served):
    """An HTTP server for the files under ``root``, on 127.0.0.1 at a free port."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = os.fspath(root)
        self._log = _Log()
        handler = type("Handler", (_RangeHandler,), {"log": self._log})
        self._server = ThreadingHTTPServer((LOOPBACK, 0), partial(handler, directory=self.root))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url_of(self, relative: str) -> str:
        return f"{self.url}/{relative.lstrip('/')}"



class S3Server(_Served):
    """moto's S3 server on 127.0.0.1 at a free port, behind a WSGI layer that counts
    requests. ``storage_options`` are what s3fs (and so xafm, zarr, xarray) need to
    reach it; any access key works."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        self._log = _Log()
        moto_app = DomainDispatcherApplication(create_backend_app)
        log = self._log

        def counting_app(environ: dict[str, Any], start_response: Any) -> Any:
            method = environ.get("REQUEST_METHOD", "")
            received = int(environ.get("CONTENT_LENGTH") or 0)
            sent = [0]

            # the whole response, logged before it goes out: a client acts on a response as
            # soon as it has it, maybe before this thread would log after sending
            chunks = list(moto_app(environ, start_response))
            sent[0] = sum(len(c) for c in chunks)
            log.add(Request(method, environ.get("PATH_INFO", ""), _parse_range(environ.get("HTTP_RANGE")), sent[0] if method == "GET" else received))
            return chunks

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        self._server = make_server(LOOPBACK, 0, counting_app, threaded=True, request_handler=Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        return {
            "key": "testing",
            "secret": "testing",
            # no region_name: s3fs would send it as a location constraint, which us-east-1 refuses
            "client_kwargs": {"endpoint_url": self.endpoint_url},
        }


    def make_bucket(self, name: str) -> None:
        import s3fs

        s3fs.S3FileSystem(**self.storage_options).mkdir(name)



@contextmanager
def running(server: Any) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
