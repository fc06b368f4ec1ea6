"""A loopback HTTP server that answers the Hugging Face Hub endpoints `aiguilleur pull`
uses, the way huggingface.co does: `paths-info` with the LFS SHA-256, `resolve` answered
by a redirect to a CDN URL carrying X-Linked-Etag/X-Linked-Size, and byte ranges on the
CDN so that interrupted downloads can resume."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    repo: str
    filename: str
    content: bytes
    advertised_sha256: str | None = None  # set to lie about the checksum

    @property
    def sha256(self) -> str:
        return self.advertised_sha256 or hashlib.sha256(self.content).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    files: list[HubFile]
    # Send this many bytes of the first full download, then hang until release(): the
    # client looks like a user who pressed Ctrl-C or lost the network mid-download.
    stall_first_download_after: int | None = None
    requests: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _cdn: ThreadingHTTPServer | None = None
    _released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self._released.set()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def cdn_endpoint(self) -> str:
        # Another origin, as on huggingface.co: the client must not follow it for metadata.
        assert self._cdn is not None
        host, port = self._cdn.server_address[:2]
        return f"http://{host!s}:{port}"

    def find(self, repo: str, filename: str) -> HubFile | None:
        return next((f for f in self.files if f.repo == repo and f.filename == filename), None)

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _record(self) -> None:
                hub.requests.append(Seen(self.command, self.path, self.headers.get("Range")))

            def do_POST(self) -> None:
                self._record()
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                # /api/models/{org}/{name}/paths-info/{revision}
                parts = self.path.split("/")
                if len(parts) < 7 or parts[1:3] != ["api", "models"] or parts[5] != "paths-info":
                    return self._send(404, b'{"error":"Not Found"}')
                repo = "/".join(parts[3:5])
                out = []
                for path in form.get("paths", []):
                    f = hub.find(repo, path)
                    if f is not None:
                        size = len(f.content)
                        lfs = {"oid": f.sha256, "size": size, "pointerSize": 135}
                        entry = {"type": "file", "oid": "f" * 40, "size": size, "path": path}
                        out.append({**entry, "lfs": lfs})
                self._send(200, json.dumps(out).encode(), "application/json")

            def do_HEAD(self) -> None:
                self._get(head=True)

            def do_GET(self) -> None:
                self._get(head=False)

            def _get(self, head: bool) -> None:
                self._record()
                parts = self.path.split("/")
                if len(parts) >= 6 and parts[3] == "resolve":
                    f = hub.find("/".join(parts[1:3]), "/".join(parts[5:]))
                    if f is None:
                        return self._send(404, b"Entry not found", head=head)
                    self.send_response(302)
                    self.send_header("Location", f"{hub.cdn_endpoint}/cdn/{f.sha256}")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("X-Linked-Etag", f'"{f.sha256}"')
                    self.send_header("X-Linked-Size", str(len(f.content)))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if len(parts) == 3 and parts[1] == "cdn":
                    f = next((f for f in hub.files if f.sha256 == parts[2]), None)
                    if f is None:
                        return self._send(404, b"no such blob", head=head)
                    return self._blob(f.content, head)
                self._send(404, b"Not Found", head=head)

            def _blob(self, content: bytes, head: bool) -> None:
                start = 0
                spec = self.headers.get("Range")
                if spec and spec.startswith("bytes=") and spec.endswith("-"):
                    start = int(spec[len("bytes=") : -1])
                body = content[start:]
                self.send_response(206 if start else 200)
                if start:
                    last, whole = len(content) - 1, len(content)
                    self.send_header("Content-Range", f"bytes {start}-{last}/{whole}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if head:
                    return
                stall = hub.stall_first_download_after
                if stall is not None and not start:
                    hub.stall_first_download_after = None
                    self.wfile.write(body[:stall])
                    self.wfile.flush()
                    hub._released.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _send(
                self, status: int, body: bytes, ctype: str = "text/plain", head: bool = False
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        for server in (self._server, self._cdn):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self.release()
        for server in (self._server, self._cdn):
            if server is not None:
                server.shutdown()
                server.server_close()
