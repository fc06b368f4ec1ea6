"""Chat prompts for the embedded engine: the GGUF's own chat template (Jinja, rendered
by llama-cpp-python's formatter), or ChatML when the file has none."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from aiguilleur.backends import llama_native as native
from aiguilleur.backends.llama_model import LiveThreads, next_token
from aiguilleur.backends.llama_state import StateKeeper
from aiguilleur.errors import Cancelled
from aiguilleur.types import ChatMessage

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_tokens(llm: Any, messages: list[ChatMessage]) -> tuple[list[int], list[str]]:
    """(prompt tokens, stop strings) for `messages` in the model's chat format."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = str(llm.metadata.get("tokenizer.chat_template") or CHATML)
    eos = native.token_text(llm, llm.token_eos())
    bos = native.token_text(llm, llm.token_bos())
    formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
    turns: Any = [{"role": m.role, "content": m.content} for m in messages]
    rendered = formatter(messages=turns)
    tokens: list[int] = llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)
    stops = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop or ""]
    return tokens, [s for s in (*stops, "<|im_end|>", "<|endoftext|>") if s]


class ChatResult(msgspec.Struct, frozen=True):
    text: str
    prompt_tokens: int
    completion_tokens: int
    generation_ms: float
    finish_reason: str = "stop"  # or "length": max_tokens came before the end


class ChatJob:
    """A chat answer being generated. It runs when no completion is waiting, and steps
    aside (keeping its tokens) as soon as one is: typing stays fast during a long answer."""

    def __init__(
        self, messages: list[ChatMessage], max_tokens: int, on_text: Callable[[str], None]
    ) -> None:
        self.messages = messages
        self.max_tokens = max_tokens
        self.on_text = on_text
        self.tokens: list[int] | None = None
        self.stops: list[str] = []
        self.generated: list[int] = []
        self.raw = b""
        self.sent = 0  # characters of the decoded text already handed to on_text
        self.finish = "length"  # until the model ends its answer itself
        self.cancel = threading.Event()
        self.future: concurrent.futures.Future[ChatResult] = concurrent.futures.Future()
        self.started = time.perf_counter()

    def text(self) -> str:
        return self.raw.decode("utf-8", errors="ignore")

    def result(self) -> ChatResult:
        text = self.text()
        for stop in self.stops:
            text = text.split(stop, 1)[0]
        return ChatResult(
            text,
            len(self.tokens or []),
            len(self.generated),
            (time.perf_counter() - self.started) * 1000,
            self.finish,
        )


def chat_step(
    llm: Any,
    keeper: StateKeeper,
    job: ChatJob,
    batch: int,
    n_ctx: int,
    waiting: Callable[[], bool],
    evaluated: Callable[[int], None],
    threads: LiveThreads,
) -> bool:
    """Advance `job`; True when it is finished, False when it stepped aside for a waiting
    request (call again later: it resumes where it stopped, restoring its KV state from
    the store when another request used the context meanwhile)."""
    import llama_cpp

    if job.tokens is None:
        job.tokens, job.stops = chat_tokens(llm, job.messages)
        room = n_ctx - job.max_tokens - 8
        if len(job.tokens) > room:
            job.tokens = job.tokens[-room:]  # keep the latest turns
    seq = job.tokens + job.generated
    n_past, _ = keeper.reuse(llm, seq)
    n_past = min(n_past, len(seq) - 1)
    llm.n_tokens = n_past
    keeper.truncated(n_past)
    for i in range(n_past, len(seq), batch):
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        if waiting():
            return False
        threads.adapt()
        piece = seq[i : i + batch]
        llm.eval(piece)
        evaluated(len(piece))
    vocab = native.vocab(llm)
    while len(job.generated) < job.max_tokens:
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        if waiting():
            return False
        threads.adapt()
        token = next_token(llm, 0.0)
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            job.finish = "stop"
            return True
        job.generated.append(token)
        job.raw += llm.detokenize([token])
        text = job.text()
        cut = min((i for s in job.stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
        if len(text) > job.sent:
            job.on_text(text[job.sent :])
            job.sent = len(text)
        if cut >= 0:
            job.finish = "stop"
            return True
        llm.eval([token])
    return True
