"""The errors backends raise and the runtime and lsp/ catch: shared by the layers, like
the shapes in types.py, so that lsp/ needs no backend module to handle them."""

from __future__ import annotations


class BackendError(Exception):
    """A backend could not answer; the router may try the next route."""


class BackendUnavailable(BackendError):
    """No model is loaded or reachable (missing model file, failed load, no network)."""


class Cancelled(BackendError):
    """The client cancelled the request; generation stopped."""


class Superseded(Cancelled):
    """A newer request for the same document replaced this one (latest wins)."""


class RateLimited(BackendError):
    """HTTP 429: try another route now, this one again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OutOfCredit(BackendError):
    """HTTP 402 (no credits) or 403 "Key limit exceeded": this key is spent for now."""


class Rejected(BackendError):
    """The server refused the request itself (bad key, unknown model, malformed body):
    retrying cannot help; the message says what to fix."""


class Transient(BackendError):
    """Timeouts, 408, 5xx, 524, 529, refused connections: worth one retry."""


class StreamFailed(BackendError):
    """The answer broke off after it started (an error chunk, or the connection cut):
    tokens may have been billed. `generation_id` lets the caller ask what they cost."""

    def __init__(self, message: str, generation_id: str = "", text: str = "") -> None:
        super().__init__(message)
        self.generation_id = generation_id
        self.text = text
