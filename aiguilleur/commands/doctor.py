"""`aiguilleur doctor`: what the server would use, whether it works, and how to fix it."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from aiguilleur.backends.models import discover
from aiguilleur.backends.threads import ThreadGovernor, usable_cores
from aiguilleur.config.loading import WORKSPACE_FILE, ConfigLayers, cache_dir, models_dir
from aiguilleur.config.settings import Config
from aiguilleur.config.trust import TrustState
from aiguilleur.context.index import RepositoryIndex, store_dir


def _line(ok: bool | None, text: str) -> None:
    mark = {True: "ok  ", False: "FAIL", None: "--  "}[ok]
    print(f"[{mark}] {text}", flush=True)


def _logs() -> None:
    """Where to look when something went wrong: editors show only warnings and errors."""
    from aiguilleur.config.homes import log_dir
    from aiguilleur.daemon.identity import daemon_dir, identity, log_path

    print("\nlogs (editors are shown warnings and errors only; -v shows everything):")
    _line(None, f"the editors' `aiguilleur serve`: {log_dir() / 'serve.log'}")
    directory = daemon_dir(identity())
    _line(None, f"this environment's daemon ({directory.name}): {log_path(directory)}")


def _threads(fixed: int | None, adapt: bool) -> None:
    """The engine's thread count as it would choose it now, from the machine's load."""
    governor = ThreadGovernor(usable_cores(), fixed, adapt=adapt)
    time.sleep(0.5)  # a window to measure what other programs use
    choice = governor.update()
    if fixed:
        _line(True, f"threads: {choice.threads} ([local] n_threads)")
    else:
        now = f"{choice.threads} of {choice.cores} usable cores now"
        _line(True, f"threads: {now}: {choice.reason}")
    if choice.others is None:
        return
    background = "pauses" if choice.contended else "runs"
    _line(
        None,
        f"other programs use {choice.others:.1f} cores: prefill and prefetch {background}; "
        "the engine measures again as it works ([local] adapt_to_load)",
    )


def _index(config: Config, layers: ConfigLayers) -> int:
    """What the repository index of the current directory holds; the problems found."""
    print("\nrepository index:")
    root = Path.cwd().resolve()
    if not config.index.enabled:
        _line(None, "off (`[index] enabled = false`): completions get no repository block")
        return 0
    store = store_dir(cache_dir(config), root)
    if not store.is_dir():
        _line(
            None,
            f"{root} is not indexed yet: an editor opening it builds the index, or "
            "`aiguilleur index`",
        )
        return 0
    try:
        index = RepositoryIndex(root, store)
    except Exception as error:  # the store is checked, not trusted
        _line(False, f"{store} is unreadable ({error}); `aiguilleur index` builds it again")
        return 1
    try:
        stats = index.stats()
        size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
        written = time.strftime("%Y-%m-%d %H:%M", time.localtime(store.stat().st_mtime))
        _line(
            True,
            f"{root}: {stats.files} files, {stats.definitions} definitions, "
            f"{size / 1e6:.1f} MB in {store}, last written {written}",
        )
        budgets = (
            f"completions {config.completion.repository_tokens}, "
            f"actions {config.actions.repository_tokens}, chat {config.chat.repository_tokens}"
        )
        _line(None, f"repository block budgets (tokens): {budgets}")
    finally:
        index.close()
    return 0


def run_doctor(timeout: float = 300.0) -> int:
    problems = 0
    layers = ConfigLayers(Path.cwd())
    loaded = layers.load()
    print("configuration (later overrides earlier):")
    _line(
        None,
        f"user file: {layers.user_file}"
        + ("" if layers.user_file.exists() else " (absent: defaults)"),
    )
    ws = Path.cwd() / WORKSPACE_FILE
    state = {
        TrustState.NONE: " (absent)",
        TrustState.TRUSTED: " (trusted: all its settings apply, keys and budgets excepted)",
        TrustState.UNTRUSTED: " (not trusted: it may only make things safer)",
        TrustState.CHANGED: " (changed since you trusted it: it may only make things safer)",
    }[loaded.trust]
    _line(None, f"workspace file: {ws}{state}")
    for item in loaded.ignored:
        _line(None, f"ignored, for want of trust: {item.describe()}")
    if loaded.ignored:
        _line(None, f"to let it apply them, as it is now: aiguilleur trust {Path.cwd()}")
    for p in loaded.problems:
        problems += 1
        _line(False, p.describe())
    config = loaded.config
    _logs()

    print("\nlocal model:")
    choice = discover(config.local.model, models_dir(config), config.local.search_common_places)
    if choice.path is None:
        problems += 1
        _line(False, choice.problem or "no model")
    else:
        _line(True, f"{choice.path} ({choice.how})")
        from aiguilleur.backends.llama import LlamaEngine
        from aiguilleur.routing.runtime import engine_settings

        try:
            engine = LlamaEngine(Path(choice.path), engine_settings(config))
        except ImportError:
            problems += 1
            _line(False, "llama-cpp-python is not installed: pip install 'aiguilleur[local]'")
        else:
            try:
                info = engine.loaded.result(timeout)
                _line(
                    True,
                    f"loads in {info.load_ms:.0f} ms: {info.name}, context {info.n_ctx}"
                    f" (trained {info.n_ctx_train}), vocabulary {info.n_vocab}",
                )
                _threads(config.local.n_threads, config.local.adapt_to_load)
                if info.fim is None:
                    problems += 1
                    _line(
                        False,
                        "no fill-in-the-middle tokens: this is not a code completion "
                        "model; use Qwen2.5-Coder (`aiguilleur pull`)",
                    )
                else:
                    f = info.fim
                    _line(
                        True,
                        f"FIM tokens from {f.source}: pre={f.pre} suf={f.suf} mid={f.mid}"
                        f" pad={f.pad} rep={f.rep} sep={f.sep}",
                    )
            except Exception as error:
                problems += 1
                _line(False, f"does not load: {error}")
            finally:
                engine.close()

    problems += _index(config, layers)

    print("\ncache:")
    cdir = cache_dir(config)
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cdir):
            pass
        _line(True, f"{cdir} is writable")
    except OSError as error:
        problems += 1
        _line(False, f"{cdir} is not writable ({error}); set `[cache] dir` in {layers.user_file}")
    kv = config.cache
    if kv.kv_disk_mb > 0 or kv.kv_ram_mb > 0:
        _line(
            None,
            f"KV states: up to {kv.kv_ram_mb} MB in RAM, {kv.kv_disk_mb} MB on disk in "
            f"{cdir / 'kv'} (`aiguilleur cache stats`)",
        )
    else:
        _line(None, "KV state store off ([cache] kv_ram_mb = kv_disk_mb = 0)")
    _line(None, f"models dir: {models_dir(config)}")
    if os.environ.get("HF_ENDPOINT"):
        _line(None, f"downloads from HF_ENDPOINT={os.environ['HF_ENDPOINT']}")
    print(f"\n{problems} problem(s)" if problems else "\nall good")
    return 1 if problems else 0
