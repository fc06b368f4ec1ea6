"""Suggestions while the machine works: `python3 dev.py bench load` (or
`.venv/bin/python bench/load.py`).

Retypes `textwrap.dedent` through `aiguilleur serve` over stdio, on the real
Qwen2.5-Coder-0.5B-Instruct Q4_K_M (verified PyPI mirror; `--model` for another GGUF),
with the user's default settings (64 tokens at most, a 1.5 s time budget), beside each
load in turn, in one run:
  idle      nothing else
  cpu1      one CPU-bound process at normal priority (a compiler, a test run)
  cpu2      two of them
  nice19    one at nice 19
  nice19-same  the same in the session of the editor (and of the standalone server)
  build     `make -j<cores>` compiling llama.cpp's ggml sources (from the llama-cpp-python
            sdist on PyPI, fetched once), over and over
  llama     a second llama.cpp process generating on every core, as another tool would
Each load runs in a session of its own, as a build started in a terminal does (Linux
schedules each session as a group: the autogroup). Arms per load: `adaptive` (the
defaults) and `fixed` (`[local] adapt_to_load = false`: every core, background work
always, as before). The editor opens the file, the user reads for `--read-s` seconds
(prefill), then types. Then the same through the shared daemon (`aiguilleur serve`
without --standalone), idle and beside one busy process; and the reaction time: one
replay during which a busy process starts and later stops, counting the requests that
reached the engine until its thread count followed.

Prints a table (engine latency p50/p90 of the keystrokes that reached the engine, the
first keystroke apart, the share of keystrokes that showed nothing, tokens per
suggestion, suggestions cut by the time budget, threads at the end) with ratios against
the idle adaptive arm, and writes bench/results/load-*.json. Run it on an otherwise idle
machine: the loads are the only other work it may see.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends.threads import usable_cores  # noqa: E402
from aiguilleur.commands.replay import (  # noqa: E402
    Keystroke,
    ServerProcess,
    retype,
    split_at_function,
)
from bench.common import isolated_env, write_user_file  # noqa: E402

LOADS = ("idle", "cpu1", "cpu2", "nice19", "nice19-same", "build", "llama")
SDIST = "llama-cpp-python==0.3.36"
BUSY = [sys.executable, "-c", "while True: pass"]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


# -- loads ---------------------------------------------------------------------------------


def ggml_sources(cache: Path) -> Path:
    """llama.cpp's ggml sources from the llama-cpp-python sdist (fetched once), with a
    Makefile that compiles them: a real parallel build to run beside the engine."""
    build = cache / "ggml-build"
    if (build / "Makefile").exists():
        return build
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        subprocess.run([*pip, "--no-binary", ":all:", SDIST, "-d", tmp], check=True)
        [archive] = Path(tmp).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/ggml/" in m.name]
            tar.extractall(cache, members, filter="data")
    [ggml] = cache.glob("llama_cpp_python-*/vendor/llama.cpp/ggml")
    build.mkdir(exist_ok=True)
    flags = f"-O2 -I{ggml}/include -I{ggml}/src -I{ggml}/src/ggml-cpu -D_GNU_SOURCE"
    (build / "Makefile").write_text(
        f"SRC := $(wildcard {ggml}/src/*.c {ggml}/src/*.cpp {ggml}/src/ggml-cpu/*.c"
        f" {ggml}/src/ggml-cpu/*.cpp)\n"
        "OBJ := $(patsubst %,%.o,$(notdir $(SRC)))\n"
        f"vpath %.c {ggml}/src {ggml}/src/ggml-cpu\n"
        f"vpath %.cpp {ggml}/src {ggml}/src/ggml-cpu\n"
        "all: $(OBJ)\n"
        f"%.c.o: %.c\n\tgcc {flags} -c $< -o $@\n"
        f"%.cpp.o: %.cpp\n\tg++ -std=c++17 {flags} -c $< -o $@\n"
    )
    return build


class Load:
    """Other work on the machine, each process in a session of its own."""

    def __init__(self, name: str, model: Path, cache: Path) -> None:
        self.name = name
        self.model = model
        self.cache = cache
        self.processes: list[subprocess.Popen[bytes]] = []

    def _start(self, cmd: list[str], own_session: bool = True, **kw: Any) -> None:
        self.processes.append(
            subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=own_session,
                **kw,
            )
        )

    def start(self) -> None:
        cores = usable_cores()
        if self.name == "cpu1":
            self._start(BUSY)
        elif self.name == "cpu2":
            self._start(BUSY)
            self._start(BUSY)
        elif self.name == "nice19":
            self._start(["nice", "-n", "19", *BUSY])
        elif self.name == "nice19-same":
            self._start(["nice", "-n", "19", *BUSY], own_session=False)
        elif self.name == "build":
            build = ggml_sources(self.cache)
            loop = f"while true; do make -k -j{cores} >/dev/null 2>&1; rm -f *.o; done"
            self._start(["bash", "-c", loop], cwd=build)
        elif self.name == "llama":
            self._start([sys.executable, __file__, "--generate", str(self.model)])
        if self.processes:
            time.sleep(3.0)  # under way (a model loaded, a compiler started)

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(process.pid) == process.pid:
                    os.killpg(process.pid, signal.SIGKILL)  # a build: make and its compilers
                else:
                    process.kill()
            process.wait()
        self.processes.clear()


def generate_forever(model: Path) -> None:
    """Another program generating with llama.cpp on every core (what llama-server,
    Ollama or another editor's engine do by default)."""
    from aiguilleur.backends import llama_native as native
    from aiguilleur.backends.llama_model import EngineSettings, load_model

    llm, _, _ = load_model(model, EngineSettings(n_ctx=2048, adapt_to_load=False))
    prompt = llm.tokenize(Path(textwrap.__file__).read_bytes()[:4000])[:256]
    while True:
        llm.reset()
        llm.eval(prompt)
        for _ in range(1024):
            llm.eval([native.argmax(llm)])


# -- one arm -------------------------------------------------------------------------------


class Arm(msgspec.Struct, frozen=True):
    load: str
    arm: str  # adaptive | fixed
    daemon: bool
    round: int = 1


def write_config(home: Path, model: Path, adapt: bool) -> None:
    write_user_file(
        home, f'[local]\nmodel = "{model}"\n' + ("" if adapt else "adapt_to_load = false\n")
    )


async def type_function(
    server: ServerProcess, path: Path, source: str, function: str, keystrokes: int, read_s: float
) -> list[Keystroke]:
    """Open the file without the body of `function`, read for `read_s`, retype it."""
    before, _, after = split_at_function(source, function)
    uri = server.open(path, before + after)
    await asyncio.sleep(read_s)
    return await retype(server, uri, source, function, keystrokes)


async def run_arm(arm: Arm, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    source = Path(textwrap.__file__)
    with tempfile.TemporaryDirectory(prefix="aiguilleur-bench-load-") as tmp:
        home = Path(tmp)
        (home / "run").mkdir(mode=0o700)
        env = isolated_env(home, XDG_RUNTIME_DIR=str(home / "run"))
        write_config(home, model, arm.arm == "adaptive")
        serve = [] if arm.daemon else ["--standalone"]
        try:
            async with ServerProcess(home, env=env, serve_args=serve) as server:
                ready = await server.wait_ready()
                if ready.model is None:
                    raise SystemExit(f"bench: model did not load: {ready.model_problem}")
                ks = await type_function(
                    server,
                    home / source.name,
                    source.read_text(),
                    "dedent",
                    args.keystrokes,
                    args.read_s,
                )
                status = await server.status()
        finally:
            if arm.daemon:
                subprocess.run(
                    [sys.executable, "-m", "aiguilleur", "daemon", "stop"],
                    env=env,
                    capture_output=True,
                    timeout=120,
                )
    return summarise(arm, ks, status)


def summarise(arm: Arm, ks: list[Keystroke], status: Any) -> dict[str, Any]:
    engine = [k for k in ks if not k.typed_through]
    first, rest = engine[:1], engine[1:]
    engine_status = status.engine
    threads = getattr(engine_status, "threads", None)
    return {
        **msgspec.to_builtins(arm),
        "keystrokes": len(ks),
        "engine_requests": len(engine),
        "first_ms": first[0].latency_ms if first else float("nan"),
        "engine_p50_ms": pct([k.latency_ms for k in rest], 0.5),
        "engine_p90_ms": pct([k.latency_ms for k in rest], 0.9),
        "all_p50_ms": pct([k.latency_ms for k in ks], 0.5),
        "empty_share": sum(not k.suggestion for k in ks) / max(1, len(ks)),
        "engine_empty_share": sum(not k.suggestion for k in engine) / max(1, len(engine)),
        "tokens_per_suggestion": statistics.fmean([k.completion_tokens for k in engine] or [0]),
        "time_cut_share": sum(k.stop_reason == "time" for k in engine) / max(1, len(engine)),
        "empty_after_tokens_by_time": sum(
            1
            for k in engine
            if not k.suggestion and k.stop_reason == "time" and k.completion_tokens > 0
        ),
        "prefilled_tokens": getattr(engine_status, "prefilled_tokens", 0),
        "background_paused": getattr(engine_status, "background_paused", 0),
        "threads_end": threads.threads if threads else None,
        "others_end": threads.others if threads else None,
        "raw": [msgspec.to_builtins(k) for k in ks],
    }


# -- reaction time -------------------------------------------------------------------------


async def reaction(model: Path, cache: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One replay, standalone, defaults: a busy process starts after `--react-before`
    engine requests and stops `--react-during` later. Per engine request: its latency and
    the thread count the status shows after it."""
    source_path = Path(textwrap.__file__)
    source = source_path.read_text()
    function = "_wrap_chunks"  # long enough for every phase
    cores = usable_cores()
    load = Load("cpu1", model, cache)
    rows: list[dict[str, Any]] = []
    phases = {args.react_before: "loaded", args.react_before + args.react_during: "after"}
    end = args.react_before + 2 * args.react_during
    with tempfile.TemporaryDirectory(prefix="aiguilleur-bench-react-") as tmp:
        home = Path(tmp)
        write_config(home, model, True)
        async with ServerProcess(home, env=isolated_env(home)) as server:
            await server.wait_ready()
            before, _, after = split_at_function(source, function)
            uri = server.open(home / source_path.name, before + after)
            await asyncio.sleep(args.read_s)

            async def after_each(k: Keystroke) -> bool:
                if k.typed_through:
                    return False
                choice = (await server.status()).engine.threads
                phase = rows[-1]["next"] if rows else "idle"
                rows.append(
                    {
                        "request": len(rows) + 1,
                        "phase": phase,
                        "latency_ms": k.latency_ms,
                        "threads": choice.threads,
                        "others": choice.others,
                        "empty": not k.suggestion,
                        "next": phases.get(len(rows) + 1, phase),
                    }
                )
                if len(rows) == args.react_before:
                    load.start()
                elif len(rows) == args.react_before + args.react_during:
                    load.stop()
                return len(rows) >= end

            try:
                await retype(server, uri, source, function, after_each=after_each)
            finally:
                load.stop()

    def settle(phase: str, threads: int) -> int | None:
        """Engine requests of `phase` until the thread count reached `threads` (1: the
        first request of the phase already ran with it)."""
        for i, row in enumerate(r for r in rows if r["phase"] == phase):
            if row["threads"] == threads:
                return i + 1
        return None

    out = {
        "rows": rows,
        "requests_to_settle_after_load_starts": settle("loaded", max(1, cores - 1)),
        "requests_to_settle_after_load_stops": settle("after", cores),
    }
    print("\nreaction (one busy process starts, then stops; standalone, defaults):")
    print(f"{'request':>8}{'phase':>8}{'ms':>8}{'threads':>8}{'others':>8}")
    for r in rows:
        print(
            f"{r['request']:>8}{r['phase']:>8}{r['latency_ms']:>8.0f}{r['threads']:>8}"
            f"{r['others'] if r['others'] is not None else '':>8}"
        )
    print(
        "engine requests until the thread count followed: after the load started "
        f"{out['requests_to_settle_after_load_starts']}, after it stopped "
        f"{out['requests_to_settle_after_load_stops']}"
    )
    return out


# -- main ----------------------------------------------------------------------------------


COLUMNS = [
    ("engine_requests", "reqs", "{:.0f}"),
    ("first_ms", "first ms", "{:.0f}"),
    ("engine_p50_ms", "p50 ms", "{:.0f}"),
    ("engine_p90_ms", "p90 ms", "{:.0f}"),
    ("p50_vs_idle", "p50/idle", "{:.2f}"),
    ("empty_share", "empty %", "{:.0%}"),
    ("tokens_per_suggestion", "tokens", "{:.1f}"),
    ("time_cut_share", "cut %", "{:.0%}"),
    ("empty_after_tokens_by_time", "empty+cut", "{:.0f}"),
    ("prefilled_tokens", "prefilled", "{:.0f}"),
    ("background_paused", "paused", "{:.0f}"),
    ("threads_end", "threads", "{}"),
]


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'load':<12}{'arm':<10}{'path':<11}{'round':>6}"
    head += "".join(f"{h:>11}" for _, h, _ in COLUMNS)
    print("\n" + head)
    for r in rows:
        cells = "".join(
            f"{(fmt.format(r[k]) if r.get(k) is not None else '-'):>11}" for k, _, fmt in COLUMNS
        )
        path = "daemon" if r["daemon"] else "standalone"
        print(f"{r['load']:<12}{r['arm']:<10}{path:<11}{r['round']:>6}{cells}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a GGUF (default: the real Qwen2.5-Coder-0.5B-Instruct)")
    parser.add_argument("--loads", default=",".join(LOADS))
    parser.add_argument("--arms", default="adaptive,fixed")
    parser.add_argument("--keystrokes", type=int, default=60)
    parser.add_argument("--read-s", type=float, default=3.0, help="reading before typing")
    parser.add_argument("--daemon-loads", default="idle,cpu1", help="'' to skip")
    parser.add_argument("--react-before", type=int, default=4)
    parser.add_argument("--react-during", type=int, default=8)
    parser.add_argument("--no-reaction", action="store_true")
    parser.add_argument("--idle-rounds", type=int, default=3)
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate_forever(Path(args.generate))
        return 0

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aiguilleur-bench"
    if args.model:
        model = Path(args.model)
    else:
        from aiguilleur.backends import mirror

        model = mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, mirror.weights_dir())
    print(f"model: {model}, {usable_cores()} usable cores", flush=True)
    if "build" in args.loads:
        ggml_sources(cache)

    loads = [load for load in args.loads.split(",") if load]
    # Idle, adaptive and fixed alternate for several rounds: the difference to tell
    # apart there is small, and this machine is shared.
    rounds = args.idle_rounds if "idle" in loads else 0
    plan = [Arm("idle", name, False, n + 1) for n in range(rounds) for name in args.arms.split(",")]
    plan += [
        Arm(load, name, False) for load in loads if load != "idle" for name in args.arms.split(",")
    ]
    plan += [
        Arm(load, name, True)
        for load in args.daemon_loads.split(",")
        if load
        for name in args.arms.split(",")
    ]
    rows: list[dict[str, Any]] = []
    for arm in plan:
        print(f"running {arm.load} / {arm.arm} / {'daemon' if arm.daemon else 'standalone'}")
        load = Load(arm.load, model, cache)
        load.start()
        try:
            rows.append(asyncio.run(run_arm(arm, model, args)))
        finally:
            load.stop()

    def p50(load: str, arm: str, daemon: bool, rnd: int | None = None) -> float | None:
        """The engine p50 of an arm; over idle rounds, their median."""
        values = [
            r["engine_p50_ms"]
            for r in rows
            if (r["load"], r["arm"], r["daemon"]) == (load, arm, daemon)
            and rnd in (None, r["round"])
        ]
        return statistics.median(values) if values else None

    for r in rows:
        idle = p50("idle", "adaptive", r["daemon"])
        r["p50_vs_idle"] = r["engine_p50_ms"] / idle if idle else None
    print_table(rows)
    ratios: dict[str, float] = {}
    for r in rows:
        adaptive = p50(r["load"], "adaptive", r["daemon"], r["round"])
        if r["arm"] == "fixed" and adaptive:
            key = f"{r['load']}{'_daemon' if r['daemon'] else ''}"
            if r["load"] == "idle" and not r["daemon"]:
                key += f"_round{r['round']}"
            ratios[key] = r["engine_p50_ms"] / adaptive
    idle_rounds = [v for k, v in ratios.items() if k.startswith("idle_round")]
    if idle_rounds:
        ratios["idle_median_of_rounds"] = statistics.median(idle_rounds)
    if ratios:
        shown = ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
        print(f"\nfixed / adaptive, engine p50: {shown}")
    report: dict[str, Any] = {"args": vars(args), "model": str(model), "cores": usable_cores()}
    report.update(arms=rows, fixed_over_adaptive=ratios)
    if not args.no_reaction:
        report["reaction"] = asyncio.run(reaction(model, cache, args))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
