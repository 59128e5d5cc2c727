"""A file server on 127.0.0.1 that can misbehave on purpose: HTTP 500, a connection closed mid-file, a stall."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Loopback:
    """`files` maps URL paths to bytes; `faults[path]` is a queue of modes used by the next requests of that path."""

    def __init__(self, url: str) -> None:
        self.url, self.files, self.faults, self.requests = url, {}, {}, []


@contextmanager
def serve() -> Iterator[Loopback]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            queue = state.faults.get(self.path, [])
            mode = queue.pop(0) if queue else "ok"
            body = state.files.get(self.path)
            if body is None or mode == "500":
                self.send_error(404 if body is None else 500)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "truncate":  # promise the whole file, send half, hang up
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            elif mode == "stall":  # headers, then silence past the client's timeout
                time.sleep(2.0)
            else:
                self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Loopback(f"http://127.0.0.1:{server.server_address[1]}/")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
