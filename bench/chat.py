"""Completion latency while a chat answer streams: `python3 dev.py bench chat`.

One `aiguilleur serve` (over stdio) on the Qwen2.5-Coder-0.5B-shaped model of the other
benches. Side by side in one run, on the same file and keystrokes:
  idle       retyping a function, a suggestion per keystroke, nothing else running;
  chatting   the same, while a local chat answer streams into a chat document.
Reports p50/p90 latency of both and their ratio (target: chatting <= 1.5x idle). Prints
a table and writes bench/results/chat-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends.synthetic import QWEN25_CODER_05B, ensure_model  # noqa: E402
from aiguilleur.commands.replay import ServerProcess, typing_states  # noqa: E402
from bench.common import isolated_env  # noqa: E402

CHAT = "# Chat: bench\n<!-- aiguilleur chat; about: /bench/m.py -->\n\n## You\n\nTalk.\n"


async def keystrokes(server: ServerProcess, path: Path, source: str, n: int) -> list[float]:
    states = typing_states(source, "dedent", n)
    uri = server.open(path, states[0].text)
    out = []
    for state in states[1:]:
        server.version += 1
        server.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(version=server.version, uri=uri),
                [lsp.TextDocumentContentChangeWholeDocument(text=state.text)],
            )
        )
        t0 = time.perf_counter()
        await server.inline(uri, state.line, state.character)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def run(model: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aiguilleur-chatbench-") as tmp:
        home = Path(tmp)
        env = isolated_env(home)
        options = {
            "local": {"model": str(model), "n_ctx": 4096, "n_batch": 256},
            "completion": {
                "max_tokens": 8,
                "prefix_tokens": 1024,
                "suffix_tokens": 128,
                "extra_tokens": 0,
                "time_budget_ms": 60_000,
            },
            "chat": {"max_tokens": args.chat_tokens},
        }
        source = Path(textwrap.__file__).read_text()
        async with ServerProcess(home, env=env, init_options=options) as server:
            await server.wait_ready()
            # Warm-up: the file's state is in the KV store for both arms.
            await keystrokes(server, home / "warm.py", source, 3)
            idle = await keystrokes(server, home / "a.py", source, args.keystrokes)
            chat_path = home / "chat.md"
            chat_path.write_text(CHAT)
            chat_uri = server.open(chat_path, CHAT, language="markdown")
            pending = asyncio.ensure_future(
                server.client.workspace_execute_command_async(
                    lsp.ExecuteCommandParams(command="aiguilleur.chat", arguments=[chat_uri])
                )
            )
            while server.applied_edits < 3:  # the answer has started streaming
                await asyncio.sleep(0.01)
            busy = await keystrokes(server, home / "b.py", source, args.keystrokes)
            still_streaming = not pending.done()
            await pending
            status = await server.status()
    return {
        "idle_ms": idle,
        "chatting_ms": busy,
        "chat_still_streaming_at_end": still_streaming,
        "chat_yields": status.engine.chat_yields,
        "chat_edits": server.applied_edits,
    }


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keystrokes", type=int, default=25)
    parser.add_argument("--chat-tokens", type=int, default=1500)
    args = parser.parse_args()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aiguilleur-bench"
    model = ensure_model(cache, QWEN25_CODER_05B)
    out = asyncio.run(run(model, args))
    idle, busy = out["idle_ms"], out["chatting_ms"]
    ratio = statistics.median(busy) / statistics.median(idle)
    print(f"\n{'arm':<12}{'p50 ms':>10}{'p90 ms':>10}")
    for name, values in (("idle", idle), ("chatting", busy)):
        print(f"{name:<12}{pct(values, 0.5):>10.1f}{pct(values, 0.9):>10.1f}")
    print(f"\ncompletion p50 while chatting / idle: {ratio:.2f}x (target <= 1.5x)")
    print(
        f"the chat stepped aside {out['chat_yields']} times, sent {out['chat_edits']} edits, "
        f"and was {'still' if out['chat_still_streaming_at_end'] else 'no longer'} streaming "
        "at the last keystroke"
    )
    out["ratio_p50"] = ratio
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
