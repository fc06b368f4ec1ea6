"""Reading API keys: from an environment variable or a key file named in the user config.

A key is returned to the caller and nowhere else: messages name where it was looked for,
never what was found.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiguilleur.config.settings import KeyConfig


class KeyProblem(Exception):
    """The key's secret could not be read; the message says where to put it."""


def read_key(label: str, key: KeyConfig) -> str:
    if key.env:
        value = os.environ.get(key.env, "").strip()
        if value:
            return value
        if not key.file:
            raise KeyProblem(f"key '{label}': environment variable {key.env} is not set")
    if key.file:
        path = Path(key.file).expanduser()
        try:
            with path.open(encoding="utf-8") as f:
                value = f.readline().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise KeyProblem(
                f"key '{label}': cannot read {path} ({type(error).__name__})"
            ) from None
        if value:
            return value
        raise KeyProblem(f"key '{label}': {path} is empty")
    raise KeyProblem(f"key '{label}': set `env` or `file` in [keys.{label}] of your user config")
