"""What must never leave the machine: private files by glob, and text that holds secrets.

Pure functions, no I/O: the route loop asks them (route_loop.private_reason) before any
text would leave for a remote route.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

# Files that never leave the machine whatever the config says; users add their own.
DEFAULT_PRIVATE = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "credentials*",
    "secrets/**",
    "**/secrets/**",
    ".ssh/**",
    ".aws/**",
    ".gnupg/**",
)

# Shapes of secrets, by name, each with literal hints: a pattern runs only on text that
# holds one of its hints (case-insensitively where the pattern is), since a regex that
# starts with \b tries every position (~0.25 ms per pattern on a 9 KB window) while a
# substring test costs microseconds, and this runs at every keystroke.
SECRET_PATTERNS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    ("private key", ("-----BEGIN ",), re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("AWS access key", ("AKIA", "ASIA"), re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "GitHub token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    ),
    ("GitHub token", ("github_pat_",), re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b")),
    (
        "OpenRouter/OpenAI/Anthropic key",
        ("sk-",),
        re.compile(r"\bsk-(?:or-v1-|ant-|proj-)?[A-Za-z0-9_-]{20,}"),
    ),
    ("Slack token", ("xox",), re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("Google API key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("Stripe key", ("k_live_",), re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}")),
    (
        "password assignment",
        ("password", "passwd", "secret", "api_key", "apikey", "token"),
        re.compile(
            r"""(?i)\b(?:password|passwd|secret|api_?key|token)\s*[:=]\s*['"][^'"\s]{8,}['"]"""
        ),
    ),
)


def _matches(path: str, pattern: str) -> bool:
    pure = PurePosixPath(path)
    if "/" not in pattern:
        # A bare name (`.env`, `*.pem`): any file of that name, in any directory.
        return fnmatch.fnmatch(pure.name, pattern)
    if pattern.startswith("**/"):
        pattern = pattern[3:]
        return any(
            fnmatch.fnmatch("/".join(pure.parts[i:]), pattern) for i in range(len(pure.parts))
        )
    return fnmatch.fnmatch(path.lstrip("/"), pattern) or any(
        fnmatch.fnmatch("/".join(pure.parts[i:]), pattern) for i in range(1, len(pure.parts))
    )


def is_private(path: str, extra_globs: tuple[str, ...] | list[str] = ()) -> bool:
    """Whether a file (absolute or relative path) must stay on this machine."""
    return any(_matches(path, g) for g in (*DEFAULT_PRIVATE, *extra_globs))


def find_secret(text: str) -> str | None:
    """The kind of the first secret-shaped string in `text`, or None."""
    folded = text.lower()
    for name, hints, pattern in SECRET_PATTERNS:
        where = folded if pattern.flags & re.IGNORECASE else text
        if any(h in where for h in hints) and pattern.search(text):
            return name
    return None
