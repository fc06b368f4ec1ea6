"""A real llama-server for the tests and the benches: built from the llama.cpp sources
that ship in llama-cpp-python's sdist on PyPI (no other download), once, and kept
between runs.

The sdist is fetched with pip and checked against its pinned SHA-256; only its
`vendor/llama.cpp` is unpacked and built (`--target llama-server`, one static binary,
for this machine's CPU: the cache is keyed by the CPU's features, so a cache carried to
another CPU is rebuilt, not trusted). The binary's SHA-256 is kept beside it and checked
on every use. The first build takes about ten minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from aiguilleur.backends.llama_model import amx_build
from tests.support.editor_packages import _locked, _sha256
from tests.support.editor_packages import cache_dir as editors_cache

VERSION = "0.3.36"  # the llama-cpp-python the project installs: the same llama.cpp
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VENDORED = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    # The web UI's assets would be downloaded from Hugging Face: not reachable, not needed.
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
)


class ServerUnavailable(Exception):
    """llama-server cannot be had on this machine; the message says why."""


def _cpu_key() -> str:
    """The CPU features a native build depends on."""
    try:
        flags = next(
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        flags = os.uname().machine
    return hashlib.sha256(flags.encode()).hexdigest()[:12]


def _folder() -> Path:
    return editors_cache() / f"llama-server-{VERSION}-{_cpu_key()}"


def llama_server_binary() -> Path:
    """The built binary, verified; built the first time (minutes)."""
    folder = _folder()
    binary = folder / "llama-server"
    stamp = folder / "llama-server.sha256"
    with _locked(folder):
        if binary.is_file() and stamp.is_file():
            if stamp.read_text().strip() == _sha256(binary):
                return binary
            binary.unlink()  # damaged: rebuilt, not trusted
        with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
            built = _build(Path(tmp))
            shutil.copy2(built, binary)
        stamp.write_text(_sha256(binary) + "\n")
    return binary


def _sdist(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    cmd += ["-q", "-d", str(into), f"llama-cpp-python=={VERSION}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    sdist = into / SDIST
    if done.returncode != 0 or not sdist.is_file():
        why = (done.stderr or "").strip().splitlines()[-1:]
        raise ServerUnavailable(f"the registry did not provide {SDIST}: {why}")
    if _sha256(sdist) != SDIST_SHA256:
        raise ServerUnavailable(f"{SDIST} does not have the pinned SHA-256")
    return sdist


def _build(tmp: Path) -> Path:
    sdist = _sdist(tmp)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(VENDORED)]
        tar.extractall(tmp, members=members, filter="data")
    source = tmp / VENDORED
    build = tmp / "build"
    jobs = str(os.cpu_count() or 2)
    for cmd in (
        ["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS],
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise ServerUnavailable(f"{' '.join(cmd[:3])} failed:\n{tail}")
    binary = build / "bin" / "llama-server"
    if not binary.is_file():
        raise ServerUnavailable("the build made no bin/llama-server")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LlamaServerProcess:
    """A llama-server on loopback, started and stopped as a team's would be."""

    def __init__(
        self,
        binary: Path,
        model: Path,
        *,
        n_ctx: int = 4096,
        slots: int = 1,
        threads: int = 2,
        api_key: str | None = None,
        log_dir: Path | None = None,
        port: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.model = model
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.n_ctx, self.slots, self.threads, self.api_key = n_ctx, slots, threads, api_key
        self.extra = extra
        self.log = (log_dir or Path(tempfile.gettempdir())) / f"llama-server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "-c", str(self.n_ctx * self.slots)]
        cmd += ["-np", str(self.slots), "-t", str(self.threads), "-tb", str(self.threads)]
        cmd += ["--no-webui", "--kv-unified"]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        cmd += self.extra
        # The same workaround as the embedded engine's (SIGILL in llama.cpp's AMX code).
        if amx_build():
            cmd.append("--no-repack")
        return cmd

    def start(self, timeout: float = 300) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerUnavailable(f"llama-server exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise ServerUnavailable(f"llama-server did not start: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)

    def kill(self) -> None:
        """Gone at once, as a crash or a pulled cable would leave it."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


@contextlib.contextmanager
def llama_server(binary: Path, model: Path, **options: object) -> Iterator[LlamaServerProcess]:
    server = LlamaServerProcess(binary, model, **options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


class CuttingProxy:
    """A loopback proxy in front of a server that cuts every `/completion` answer after
    its first `cut_after` bytes, as a network that drops mid-answer does. Everything else
    goes through untouched."""

    def __init__(self, upstream_port: int, cut_after: int = 300) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        state = {"completion": False, "sent": 0}

        def requests() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    if data.startswith((b"POST ", b"GET ")):
                        state["completion"] = data.startswith(b"POST /completion ")
                        state["sent"] = 0
                    upstream.sendall(data)
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

        threading.Thread(target=requests, daemon=True).start()
        with contextlib.suppress(OSError):
            while data := upstream.recv(4096):
                if state["completion"] and state["sent"] + len(data) > self.cut_after:
                    client.sendall(data[: max(0, self.cut_after - state["sent"])])
                    self.cuts += 1
                    break
                state["sent"] += len(data)
                client.sendall(data)
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
