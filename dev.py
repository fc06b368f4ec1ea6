#!/usr/bin/env python3
"""One command to set up and run: `python3 dev.py demo` or `python3 dev.py test`.

Creates .venv on first use and installs the project into it (llama-cpp-python compiles
from source once; pip's wheel cache reuses the build afterwards). Needs only Python 3.11+.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def run(*cmd: str | Path, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=check).returncode


def ensure(extras: str) -> None:
    if not PY.exists():
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    stamp = VENV / f".installed-{extras.replace(',', '-')}-{digest}"
    if stamp.exists():
        return
    os.environ.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]")
    stamp.touch()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "bench"}:
        print(
            "usage: python3 dev.py demo|test|bench [replay|kv|openrouter|chat|quality|daemon|"
            "load|soak|structure|index|context|crossfile|shared|budget|acceptance|estimate] "
            "[args...]"
        )
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        ensure("local")
        return run(VENV / "bin" / "aiguilleur", "demo", *rest, check=False)
    ensure("local,test")
    if command == "bench":
        # `bench` alone: the keystroke replay; `bench kv`: the KV state store;
        # `bench openrouter`: the remote route's overhead.
        scripts = {
            "kv": "bench/kv.py",
            "openrouter": "bench/openrouter.py",
            "chat": "bench/chat.py",
            "quality": "bench/quality.py",
            "daemon": "bench/daemon.py",
            "load": "bench/load.py",
            "soak": "bench/soak.py",
            "structure": "bench/structure.py",
            "index": "bench/index.py",
            "context": "bench/context.py",
            "crossfile": "bench/crossfile.py",
            "shared": "bench/shared_server.py",
            "budget": "bench/budget.py",
            "acceptance": "bench/acceptance.py",
            "estimate": "bench/estimate.py",
        }
        script = scripts.get(rest[0], "bench/run.py") if rest else "bench/run.py"
        if rest[:1] and (rest[0] in scripts or rest[0] == "replay"):
            rest = rest[1:]
        return run(PY, script, *rest, check=False)
    failed = 0
    failed |= run(PY, "-m", "ruff", "check", ".", check=False)
    failed |= run(PY, "-m", "ruff", "format", "--check", ".", check=False)
    failed |= run(PY, "-m", "mypy", check=False)
    failed |= run(PY, "-m", "pytest", *rest, check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
