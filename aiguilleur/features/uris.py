"""Document URIs to file paths."""

from __future__ import annotations

from urllib.parse import unquote, urlparse


def path_of(uri: str) -> str:
    """The file path of a `file:` URI; any other URI as it is."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri
