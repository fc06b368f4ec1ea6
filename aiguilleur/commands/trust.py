"""`aiguilleur trust [DIR]`, `--revoke [DIR]`, `--list`: which workspace files may use the
powers of the user's own settings (see trust.py)."""

from __future__ import annotations

import time
from pathlib import Path

from aiguilleur.config.loading import WORKSPACE_FILE, ConfigLayers, trust_store
from aiguilleur.config.trust_store import digest


def run_trust(directory: str | None, revoke: bool, list_all: bool) -> int:
    store = trust_store()
    if list_all:
        entries = store.entries()
        if not entries:
            print("no trusted workspace files")
        for e in entries:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.trusted_at))
            print(f"{_state(Path(e.path), e.sha256):<9} {e.path} (trusted {when})")
        return 0
    root = Path(directory or ".").resolve()
    file = root / WORKSPACE_FILE
    try:
        if revoke:
            if store.revoke(file):
                print(f"{file} is no longer trusted")
                return 0
            print(f"{file} was not trusted")
            return 1
        content = file.read_bytes()
        gains = ConfigLayers(root, trust=store).load().ignored
        if file.read_bytes() != content:
            print(f"aiguilleur: {file} changed while it was read; run the command again")
            return 1
        store.trust(file, content)
    except OSError as error:
        print(f"aiguilleur: cannot {'revoke' if revoke else 'trust'} {file}: {error}")
        return 1
    print(f"trusted {file} as it is now (sha256 {digest(content)[:16]}…)")
    if gains:
        print("it may now, beyond what an untrusted workspace may:")
        for item in gains:
            print(f"  {item.key} = {item.value}")
    print(
        "Keys and budgets still come from your user file only. Any change to the file "
        f"untrusts it; `aiguilleur trust --revoke {root}` undoes this."
    )
    return 0


def _state(path: Path, sha256: str) -> str:
    try:
        return "trusted" if digest(path.read_bytes()) == sha256 else "changed"
    except OSError:
        return "missing"
