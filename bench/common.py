"""What the benches share."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment with config, cache and data dirs under `home`: no user config,
    model or KV state leaks into a measurement."""
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(home / "c"),
        XDG_CACHE_HOME=str(home / "k"),
        XDG_DATA_HOME=str(home / "d"),
        **extra,
    )
    return env


def write_user_file(home: Path, text: str) -> Path:
    """The user config of `home`'s environment (isolated_env): a daemon reads only it."""
    path = home / "c" / "aiguilleur" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def installed_modules() -> list[Path]:
    """The top-level modules of the packages installed beside this interpreter (real code
    nobody here wrote), ours left out, in a stable order."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = Path(sys.prefix) / "lib" / version / "site-packages"
    return [p for p in sorted(site.glob("*/*.py")) if "aiguilleur" not in str(p)]
