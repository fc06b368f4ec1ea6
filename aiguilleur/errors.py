"""The errors backends raise and the route loop (route_loop.py) and lsp/ catch: shared
by the layers, like the shapes in types.py, so that lsp/ needs no backend module to
handle them."""

from __future__ import annotations


class BackendError(Exception):
    """A backend could not answer; the route loop tries the next route."""


class BackendUnavailable(BackendError):
    """No model is loaded or reachable (missing model file, failed load, no network)."""


class Cancelled(BackendError):
    """The client cancelled the request; generation stopped."""


class Superseded(Cancelled):
    """A newer request of the same editor session replaced this one (latest wins: the
    user types in one place at a time, whichever file it is)."""


class MachineBusy(Cancelled):
    """Work nobody waits for yet (a prefill, a prefetch) stopped because other programs
    need the cores: it resumes, or is asked for again, once they leave them."""


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
    """The answer broke off after it started (an error chunk, the connection cut, a stream
    that ended without its end marker, a chunk that does not parse): it is incomplete and
    must not be used, but tokens may have been billed. `cost_usd` is what the server
    reported before the break, if it did; else `generation_id` lets the caller ask."""

    def __init__(
        self,
        message: str,
        generation_id: str = "",
        text: str = "",
        cost_usd: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        super().__init__(message)
        self.generation_id = generation_id
        self.text = text
        self.cost_usd = cost_usd
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


class AnswerCut(Exception):
    """A streamed answer broke off after part of it reached the user (a chat): it cannot
    fall back to another route, which would append a second answer to half of the first.
    Not a BackendError, so no route loop catches it."""

    def __init__(self, message: str, route: str, model: str) -> None:
        super().__init__(message)
        self.route = route
        self.model = model


class IncompleteAnswer(Exception):
    """The model used all its tokens before its answer ended: as an edit it would cut the
    user's code in half, so it is not applied."""


class BudgetRefused(Exception):
    """A reservation that does not fit; the message says which limit and by how much.

    `in_flight` is the part of `spent` held by reservations of requests not yet settled:
    when the request would fit without them, the budget is busy, not spent (`busy`), and
    only this request goes elsewhere. `smallest` is the most the smallest request worth
    sending in its place could cost (a completion with a shorter prompt): while what is
    left buys that, the key is not spent either (`exhausted`)."""

    def __init__(
        self,
        key: str,
        period: str,
        limit: float,
        spent: float,
        asked: float,
        in_flight: float = 0.0,
        smallest: float | None = None,
    ) -> None:
        self.key, self.period, self.limit, self.spent, self.asked = key, period, limit, spent, asked
        self.in_flight = in_flight
        self.smallest = smallest
        if self.busy:
            message = (
                f"key '{key}': ${in_flight:.4f} of its ${limit:.2f} {period} budget is held "
                f"by requests still in flight; this request could cost up to ${asked:.4f}"
            )
        elif not self.exhausted:
            message = (
                f"key '{key}' has ${self.left:.4f} left of its ${limit:.2f} {period} budget, "
                f"less than this request could cost (${asked:.4f}); a shorter one still fits"
            )
        else:
            message = (
                f"key '{key}' has spent ${spent:.4f} of its ${limit:.2f} {period} budget; "
                f"this request could cost up to ${asked:.4f}"
            )
        super().__init__(message)

    def with_smallest(self, smallest: float) -> BudgetRefused:
        """The same refusal, knowing what the smallest request in its place would cost."""
        return BudgetRefused(
            self.key, self.period, self.limit, self.spent, self.asked, self.in_flight, smallest
        )

    @property
    def left(self) -> float:
        """What is left once the requests in flight settle (at no cost, at best)."""
        return self.limit - (self.spent - self.in_flight)

    @property
    def busy(self) -> bool:
        """The request would fit once the requests in flight settle (at most at what they
        reserved): the key is not spent."""
        return self.in_flight > 0 and self.spent - self.in_flight + self.asked <= self.limit

    @property
    def exhausted(self) -> bool:
        """Nothing worth sending fits any more, even once the requests in flight settle:
        the key is spent (until the period ends or a settle frees some)."""
        if self.busy:
            return False
        return self.smallest is None or self.left < self.smallest
