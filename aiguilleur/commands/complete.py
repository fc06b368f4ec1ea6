"""`aiguilleur complete FILE:LINE:COL`: one completion through the server's pipeline."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec

from aiguilleur.config.loading import ConfigLayers
from aiguilleur.features.completion import CompletionFeature
from aiguilleur.features.needs import FeatureNeeds, NoEditor
from aiguilleur.features.text import line_bounds
from aiguilleur.routing.route_loop import FixedPolicy, SessionRoutes
from aiguilleur.routing.runtime import Runtime


def parse_location(location: str) -> tuple[Path, int, int]:
    try:
        file, line, col = location.rsplit(":", 2)
        return Path(file), int(line), int(col)
    except ValueError:
        raise SystemExit(
            f"aiguilleur complete: expected FILE:LINE:COL (1-based), got {location!r}"
        ) from None


class OneDocument:
    """The file being completed, as the only open document, never edited meanwhile."""

    def __init__(self, uri: str, text: str) -> None:
        self.uri, self._text = uri, text

    def text(self, uri: str) -> str | None:
        return self._text if uri == self.uri else None

    def version(self, uri: str) -> int | None:
        return 0 if uri == self.uri else None


async def complete_once(location: str, timeout: float) -> int:
    path, line, col = parse_location(location)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"aiguilleur complete: cannot read {path}: {error}", file=sys.stderr)
        return 2
    bounds = line_bounds(text, line - 1)
    if bounds is None:
        print(f"aiguilleur complete: {path} has no line {line}", file=sys.stderr)
        return 2
    offset = min(bounds[0] + max(0, col - 1), bounds[1])  # COL counts characters
    runtime = Runtime(ConfigLayers(path.resolve().parent).load().config)
    choice = await asyncio.to_thread(runtime.start)
    if not runtime.deferred and (choice.path is None or runtime.engine is None):
        print(f"aiguilleur complete: {choice.problem}", file=sys.stderr)
        return 1
    try:
        await runtime.start_remote()
        if runtime.engine is not None:
            await asyncio.wait_for(asyncio.wrap_future(runtime.engine.loaded), timeout)
        # One suggestion and out: nothing to compute ahead of the next one.
        cfg = runtime.config
        policy = msgspec.structs.replace(
            cfg, completion=msgspec.structs.replace(cfg.completion, prefetch=False)
        )
        settings = FixedPolicy(policy)
        uri = path.resolve().as_uri()
        needs = FeatureNeeds(
            settings=settings,
            routes=SessionRoutes(runtime, settings),
            documents=OneDocument(uri, text),
            editor=NoEditor(),
        )
        s = await asyncio.wait_for(CompletionFeature(needs).suggest(uri, text, 0, offset), timeout)
    except Exception as error:
        print(f"aiguilleur complete: {error}", file=sys.stderr)
        return 1
    finally:
        if runtime.remote is not None:
            await runtime.remote.close()
        runtime.close()
    if s is None:
        print("aiguilleur complete: no suggestion at that position", file=sys.stderr)
        return 1
    sys.stdout.write(s.text + "\n")
    u = s.usage
    print(
        f"[{s.model} via {s.route}: {u.prompt_tokens} prompt tokens ({u.evaluated_tokens} "
        f"evaluated, {u.restored_tokens} restored from the KV cache), {u.completion_tokens} "
        f"generated, prompt {u.prompt_ms:.0f} ms, generation {u.generation_ms:.0f} ms]",
        file=sys.stderr,
    )
    return 0
