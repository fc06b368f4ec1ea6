"""Where a local suggestion's time goes, for `bench/run.py --model real`:

- generation rate of the engine (ms per generated token, tokens/s) against llama.cpp's
  own `llama-bench` (tg) on the same model and threads, when LLAMA_BENCH names it;
- the suggestion that follows an accepted one: a suggestion is shown, the user reads it
  for `read_ms`, accepts it (the editor inserts it) and the next one is asked for at once.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.backends.llama import LlamaEngine
from aiguilleur.backends.llama_model import EngineSettings, amx_build
from aiguilleur.commands.replay import ServerProcess
from aiguilleur.types import FimContext, GenerationParams, Request, RequestKind
from bench.common import isolated_env


class Rate(msgspec.Struct, frozen=True):
    arm: str
    tokens: int
    ms: float
    drafted: int = 0
    accepted: int = 0
    depth: int = 0  # tokens already in the context while generating (mean)

    @property
    def tokens_per_s(self) -> float:
        return 1000 * self.tokens / self.ms if self.ms else 0.0


def _prompts(source: str, n: int) -> list[str]:
    """Prefixes of `source` that end after a top-level definition: the cursor at an empty
    top-level line, where nothing stops a generation but the model itself."""
    ends = [i + 2 for i in range(len(source) - 2) if source[i : i + 3] == "\n\nd"]
    step = max(1, len(ends) // n)
    return [source[max(0, e - 6000) : e] for e in ends[::step][:n]]


def engine_rate(model: Path, threads: int, speculative: bool, source: str, n: int) -> Rate:
    """Tokens the engine generates per second after a prompt, stop rules off."""
    engine = LlamaEngine(
        model, EngineSettings(n_ctx=4096, n_threads=threads, speculative=speculative)
    )
    tokens, ms, drafted, accepted, depth = 0, 0.0, 0, 0, 0
    prompts = _prompts(source, n)
    try:
        engine.loaded.result(600)
        for i, prefix in enumerate(prompts):
            request = Request(
                RequestKind.COMPLETION,
                key=f"rate{i}",
                context=FimContext(path="bench.py", prefix=prefix, suffix=""),
                params=GenerationParams(max_tokens=64, time_budget_ms=600_000),
                prefix_tokens=1024,
                suffix_tokens=0,
            )
            c = engine.submit(request).result(600)
            # The first token comes with the prompt; each later one costs an evaluation.
            tokens += max(0, c.usage.completion_tokens - 1)
            ms += c.usage.generation_ms
            drafted += c.usage.drafted_tokens
            accepted += c.usage.accepted_tokens
            # Generation runs over the prompt plus half the answer, on average.
            depth += c.usage.prompt_tokens + c.usage.completion_tokens // 2
    finally:
        engine.close()
        engine.join(60)
    name = "aiguilleur, speculative" if speculative else "aiguilleur (plain decoding)"
    return Rate(name, tokens, ms, drafted, accepted, depth // max(1, len(prompts)))


def llama_bench_rate(
    binary: str, model: Path, threads: int, n: int = 64, depth: int = 0, repetitions: int = 3
) -> Rate | None:
    """llama-bench's tg: `n` tokens generated with `depth` tokens already in the context
    (its `-d`: attention over a long context costs more than after an empty prompt)."""
    cmd = [binary, "-m", str(model), "-t", str(threads), "-p", "0", "-n", str(n)]
    cmd += ["-d", str(depth), "-r", str(repetitions), "-o", "json"]
    # The engine runs without flash attention (llama-cpp-python's default); llama-bench's
    # "auto" turns it on, which here generates 0.7x as fast at depth 927 (16.6 vs 23.7 tok/s).
    cmd += ["-fa", "0"]
    if amx_build():  # the same SIGILL as the engine's (llama_model.py) without it
        cmd += ["--repack", "0"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"llama-bench failed: {error}")
        return None
    [row] = json.loads(out.stdout)
    avg_ns = float(row["avg_ns"])
    return Rate("llama-bench tg", n, avg_ns / 1e6, depth=depth)


class Accept(msgspec.Struct, frozen=True):
    task: str
    first: str
    second: str
    latency_ms: float  # of the second suggestion, asked for right after the accept
    ahead: bool  # it was the one computed ahead


def _after_insert(line: int, character: int, text: str) -> tuple[int, int]:
    parts = text.split("\n")
    if len(parts) == 1:
        return line, character + len(text)
    return line + len(parts) - 1, len(parts[-1])


async def accept_chain(
    model: Path, tasks: list[Any], threads: int, prefetch: bool, read_ms: int, max_tokens: int
) -> list[Accept]:
    """For each task: a suggestion, `read_ms` of reading, Tab, and the next suggestion."""
    options = {
        "local": {"model": str(model), "n_threads": threads},
        "completion": {
            "max_tokens": max_tokens,
            "time_budget_ms": 600_000,
            "extra_tokens": 0,
            "prefetch": prefetch,
        },
    }
    out: list[Accept] = []
    with tempfile.TemporaryDirectory(prefix="aiguilleur-accept-") as tmp:
        home = Path(tmp)
        async with ServerProcess(home, env=isolated_env(home), init_options=options) as server:
            status = await server.wait_ready()
            if status.model is None:
                raise SystemExit(f"bench: the model did not load: {status.model_problem}")
            for i, task in enumerate(tasks):
                uri = server.open(home / f"accept{i}.py", task.prefix + task.suffix)
                first = await server.inline(uri, task.line, task.character)
                if first:
                    await asyncio.sleep(read_ms / 1000)
                    server.insert(uri, task.line, task.character, first)
                    line, character = _after_insert(task.line, task.character, first)
                    t0 = time.perf_counter()
                    second = await server.inline(uri, line, character)
                    ms = (time.perf_counter() - t0) * 1000
                    last = await server.last(uri)
                    ahead = bool(last is not None and last.ahead)
                    out.append(Accept(task.id, first, second, ms, ahead))
                server.close(uri)
    return out


def summarise_accepts(name: str, accepts: list[Accept]) -> dict[str, Any]:
    ms = sorted(a.latency_ms for a in accepts)
    return {
        "arm": name,
        "accepts": len(accepts),
        "from_prefetch": sum(a.ahead for a in accepts),
        "latency_ms_p50": statistics.median(ms) if ms else None,
        "latency_ms_p90": ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))] if ms else None,
    }
