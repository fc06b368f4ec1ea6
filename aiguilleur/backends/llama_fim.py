"""One fill-in-the-middle request on the engine thread: the prompt cut to fit the
context, the KV cache reused up to the first differing token, evaluation in slices
(checking for cancellation between them), and generation token by token until a stop.

The queue that decides which request runs lives in llama.py; this module only runs one.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiguilleur.backends import llama_native as native
from aiguilleur.backends.answer import cut_at_token, stop_point
from aiguilleur.backends.counts import Count
from aiguilleur.backends.fim import FimPrompt, TokenCounter, fitted_prompt
from aiguilleur.backends.healing import VocabIndex
from aiguilleur.backends.llama_model import EngineSettings, LiveThreads, next_token, tokenize
from aiguilleur.backends.llama_state import StateKeeper
from aiguilleur.backends.speculative import DraftStats, GreedyDecoder
from aiguilleur.errors import BackendUnavailable, Cancelled, MachineBusy, Superseded
from aiguilleur.types import Completion, FimTokens, Request, StopReason, Usage

log = logging.getLogger(__name__)

_CHUNK_MEMO = 256  # chunks' tokens remembered (the block's and the ring's, several files)
# Tokens per evaluation slice of background work: the longest a request waits for it
# (0.5B Q4_K_M, 2 threads here: 16 tokens 141 ms at 113 tok/s, 32 tokens 240 ms at 133).
_PREFILL_SLICE = 16


class FimJob:
    __slots__ = (
        "cancel",
        "future",
        "passed_over",
        "prefill",
        "reason",
        "request",
        "submitted",
        "yields",
    )

    def __init__(
        self,
        request: Request,
        prefill: bool = False,
        yields: Callable[[], bool] | None = None,
    ) -> None:
        self.request = request
        self.prefill = prefill
        # A job nobody waits for yet (a prefetch): it gives way as soon as this says a
        # request is waiting, between slices and between tokens.
        self.yields = yields
        self.cancel = threading.Event()
        self.reason = "cancelled"
        self.future: concurrent.futures.Future[Completion] = concurrent.futures.Future()
        self.submitted = time.perf_counter()
        # How many times another session's request ran first while this one waited.
        self.passed_over = 0

    def abort(self, reason: str) -> None:
        self.reason = reason
        self.cancel.set()

    def check(self) -> None:
        if self.cancel.is_set():
            raise Superseded(self.reason) if self.reason == "superseded" else Cancelled(self.reason)
        if self.yields is not None and self.yields():
            raise Cancelled("yielded to a request")


class FimRunner:
    """Runs FIM jobs on the loaded model. Called only from the engine thread."""

    def __init__(
        self,
        llm: Any,
        fim: FimTokens | None,
        settings: EngineSettings,
        keeper: StateKeeper,
        model_name: str,
        count: Callable[[Count, float], None],
        waiting: Callable[[], bool],
        threads: LiveThreads,
    ) -> None:
        self.llm = llm
        self.fim = fim
        self.settings = settings
        self.keeper = keeper
        self.model_name = model_name
        self.count = count
        self.waiting = waiting  # a request is queued: a prefill stops for it
        self.threads = threads
        self.tokens = TokenCounter(self.tokenize)
        self._chunk_tokens: OrderedDict[str, list[int]] = OrderedDict()
        # Built with the model (a few tenths of a second), not at the first keystroke.
        self.vocab = VocabIndex(llm)

    def tokenize(self, text: str) -> list[int]:
        return tokenize(self.llm, text)

    def tokenize_chunk(self, text: str) -> list[int]:
        """Tokens of a chunk of another file, remembered: the repository block and the
        ring come back unchanged at every keystroke (3 ms per 4,000 characters saved)."""
        tokens = self._chunk_tokens.get(text)
        if tokens is None:
            tokens = self._chunk_tokens[text] = self.tokenize(text)
            while len(self._chunk_tokens) > _CHUNK_MEMO:
                self._chunk_tokens.popitem(last=False)
        else:
            self._chunk_tokens.move_to_end(text)
        return tokens

    def prompt(self, req: Request) -> tuple[FimPrompt, list[int]]:
        """The FIM prompt and its tokens, cut to fit the context."""
        fim = self.fim
        if fim is None:
            raise BackendUnavailable(
                f"{self.model_name} has no fill-in-the-middle tokens: use a code model "
                "(e.g. Qwen2.5-Coder; `aiguilleur pull`)"
            )
        return fitted_prompt(
            req,
            fim,
            self.settings.n_ctx,
            self.tokenize,
            self.tokens,
            token_text=self.vocab.piece,
            tokenize_chunk=self.tokenize_chunk,
        )

    def complete(self, job: FimJob) -> Completion:
        req = job.request
        started = time.perf_counter()
        queue_ms = (started - job.submitted) * 1000
        prompt, tokens = self.prompt(req)
        # Token healing (healing.py): the end of the cursor line's text is left out of the
        # prompt, and generation starts by spelling it again.
        heal = prompt.heal
        # Reuse the KV cache (live, else a stored state) up to the first differing token.
        n_past, restored = 0, 0
        if self.settings.reuse_prefix:
            n_past, restored = self.keeper.reuse(self.llm, tokens)
        n_past = min(n_past, len(tokens) - 1)  # the last prompt token must be evaluated
        restore_ms = (time.perf_counter() - started) * 1000
        self._eval(job, tokens, n_past)
        prompt_done = time.perf_counter()

        text, n_gen, reason, drafts = self._generate(job, prompt_done, heal)
        log.debug("engine.generated heal=%r text=%r reason=%s", heal, text, reason)
        finished = time.perf_counter()
        usage = Usage(
            prompt_tokens=len(tokens),
            evaluated_tokens=len(tokens) - n_past,
            reused_tokens=n_past,
            restored_tokens=restored,
            completion_tokens=n_gen,
            drafted_tokens=drafts.drafted,
            accepted_tokens=drafts.accepted,
            prompt_ms=(prompt_done - started) * 1000,
            restore_ms=restore_ms,
            generation_ms=(finished - prompt_done) * 1000,
            queue_ms=queue_ms,
        )
        log.debug(
            "engine.done prompt=%d evaluated=%d restored=%d generated=%d prompt_ms=%.1f "
            "gen_ms=%.1f",
            usage.prompt_tokens,
            usage.evaluated_tokens,
            restored,
            n_gen,
            usage.prompt_ms,
            usage.generation_ms,
        )
        return Completion(text, usage, route="local", model=self.model_name, stop_reason=reason)

    def prefill(self, job: FimJob) -> Completion:
        if self.fim is None:  # it cannot fill in code: nothing worth warming up
            return Completion("", Usage(), route="local", model="")
        prompt, tokens = self.prompt(job.request)
        target = min(prompt.prefix_end, len(tokens))
        log.debug(
            "prefill.start path=%s tokens=%d target=%d",
            job.request.context.path,
            len(tokens),
            target,
        )
        n_past, _ = self.keeper.reuse(self.llm, tokens[:target])
        done = self._eval(job, tokens[:target], n_past, yield_to_requests=True)
        usage = Usage(prompt_tokens=target, reused_tokens=n_past, evaluated_tokens=done)
        return Completion("", usage, route="local", model="")

    def _eval(
        self, job: FimJob, tokens: list[int], n_past: int, yield_to_requests: bool = False
    ) -> int:
        """Evaluate tokens[n_past:] in slices, checking for cancellation between them.
        Returns how many were evaluated (a prefill stops early when a request arrives)."""
        llm = self.llm
        llm.n_tokens = n_past
        self.keeper.truncated(n_past)
        # Background work runs in small slices: a request waits for at most one of them.
        background = yield_to_requests or job.yields is not None
        batch = min(self.settings.n_batch, _PREFILL_SLICE) if background else self.settings.n_batch
        done = 0
        for i in range(n_past, len(tokens), batch):
            job.check()
            if yield_to_requests and self.waiting():
                break
            self._pace(job, background)
            piece = tokens[i : i + batch]
            llm.eval(piece)
            done += len(piece)
            self.count(Count.EVALUATED, len(piece))
            if yield_to_requests:
                self.count(Count.PREFILLED, len(piece))
        return done

    def _pace(self, job: FimJob, background: bool) -> None:
        """Between two evaluations: the thread count follows the machine's load, and work
        nobody waits for stops while other programs need the cores."""
        if self.threads.adapt().contended and background:
            raise MachineBusy("other programs need the cores")

    def _generate(
        self, job: FimJob, t0: float, heal: bytes = b""
    ) -> tuple[str, int, StopReason, DraftStats]:
        """Generate after the prompt. The first tokens must agree with `heal` (the text
        left out of the prompt) until they cover it; what follows it is the answer."""
        import llama_cpp
        import numpy as np

        llm = self.llm
        gen = job.request.params
        assert self.fim is not None
        stops = self.fim.stops
        vocab = native.vocab(llm)
        deadline = t0 + gen.time_budget_ms / 1000
        raw = b""
        n = 0
        reason = StopReason.LENGTH
        text = ""
        greedy: GreedyDecoder | None = None
        try:
            # The tokens that spell `heal` again are not counted: they are not the answer.
            while n < gen.max_tokens:
                job.check()
                self._pace(job, job.yields is not None)
                # The budget ends generation once the answer has a token: the prompt is
                # paid for, and one more token is what shows something rather than nothing.
                if n and time.perf_counter() > deadline:
                    reason = StopReason.TIME
                    upcoming = greedy.next() if greedy else native.argmax(llm)
                    if upcoming in stops or llama_cpp.llama_vocab_is_eog(vocab, upcoming):
                        reason = StopReason.EOG  # it was whole: the model would have ended there
                    else:
                        text = cut_at_token(raw[len(heal) :], llm.detokenize([upcoming]))
                    break
                if len(raw) < len(heal):
                    if llm.n_tokens >= self.settings.n_ctx - 1:
                        reason = StopReason.CONTEXT
                        break
                    allowed = self.vocab.agreeing(heal[len(raw) :])
                    token = int(allowed[int(np.argmax(native.last_logits(llm)[allowed]))])
                    raw += self.vocab.piece(token)
                    llm.eval([token])
                    continue
                if gen.temperature <= 0 and greedy is None:
                    history = llm.input_ids[: llm.n_tokens]
                    greedy = GreedyDecoder(llm, history, self.settings.speculative)
                token = greedy.next() if greedy else next_token(llm, gen.temperature)
                if token in stops or llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = StopReason.EOG
                    break
                raw += llm.detokenize([token])
                n += 1
                text = raw[len(heal) :].decode("utf-8", errors="ignore")
                cut = stop_point(text, single_line=gen.single_line, min_indent=gen.min_indent)
                if cut is not None:
                    text, reason = text[:cut], StopReason.BOUNDARY
                    break
                self.count(Count.GENERATED, 1)
                if n < gen.max_tokens:
                    if (greedy.length if greedy else llm.n_tokens) >= self.settings.n_ctx - 1:
                        reason = StopReason.CONTEXT
                        break
                    if greedy:
                        greedy.feed(token)
                    else:
                        llm.eval([token])
        finally:
            if greedy:
                greedy.settle()
        return text, n, reason, greedy.stats if greedy else DraftStats()
