"""Finding a GGUF code model: configured path, alias, or a look around the usual places."""

from __future__ import annotations

import os
import re
from pathlib import Path

import msgspec


class ModelAlias(msgspec.Struct, frozen=True):
    alias: str
    repo: str
    filename: str
    size_hint: str


# Base (not instruct) Qwen2.5-Coder models: they are trained for fill-in-the-middle.
ALIASES: tuple[ModelAlias, ...] = (
    ModelAlias(
        "qwen2.5-coder-1.5b",
        "ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF",
        "qwen2.5-coder-1.5b-q8_0.gguf",
        "1.6 GB",
    ),
    ModelAlias(
        "qwen2.5-coder-0.5b",
        "ggml-org/Qwen2.5-Coder-0.5B-Q8_0-GGUF",
        "qwen2.5-coder-0.5b-q8_0.gguf",
        "0.5 GB",
    ),
    ModelAlias(
        "qwen2.5-coder-3b",
        "ggml-org/Qwen2.5-Coder-3B-Q8_0-GGUF",
        "qwen2.5-coder-3b-q8_0.gguf",
        "3.3 GB",
    ),
    ModelAlias(
        "qwen2.5-coder-7b",
        "ggml-org/Qwen2.5-Coder-7B-Q8_0-GGUF",
        "qwen2.5-coder-7b-q8_0.gguf",
        "8.1 GB",
    ),
    # The instruct model also fills in the middle, and it can be had without the hub
    # (aiguilleur/backends/mirror.py): what the demo and the quality bench use offline.
    ModelAlias(
        "qwen2.5-coder-0.5b-instruct",
        "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "0.5 GB",
    ),
)
DEFAULT_ALIAS = ALIASES[0]
_SHORT = {"0.5b": 1, "1.5b": 0, "3b": 2, "7b": 3, "0.5b-instruct": 4}


def find_alias(name: str) -> ModelAlias | None:
    key = name.lower().strip()
    if key in _SHORT:
        return ALIASES[_SHORT[key]]
    for alias in ALIASES:
        if key in (alias.alias, alias.repo.lower(), alias.filename):
            return alias
    return None


class ModelChoice(msgspec.Struct, frozen=True):
    path: str | None
    how: str  # how it was found, for `doctor` and the logs
    problem: str | None = None  # why there is none, with the fix


# Names of models trained for fill-in-the-middle.
_FIM_NAME = re.compile(
    r"coder|starcoder|codestral|codegemma|codellama|deepseek-coder|granite-\d+b-code|santacoder",
    re.IGNORECASE,
)
_INSTRUCT = re.compile(r"instruct|chat|-it[-.]", re.IGNORECASE)

HOW_TO_GET_ONE = (
    "run `aiguilleur pull` to download Qwen2.5-Coder-1.5B (1.6 GB), or set "
    '`[local] model = "/path/to/model.gguf"` in ~/.config/aiguilleur/config.toml'
)


def common_places(models_dir: Path) -> list[Path]:
    home = Path.home()
    hf = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME")
    hf_hub = (
        Path(hf) / ("" if os.environ.get("HF_HUB_CACHE") else "hub")
        if hf
        else (home / ".cache" / "huggingface" / "hub")
    )
    llama_cache = os.environ.get("LLAMA_CACHE") or str(home / ".cache" / "llama.cpp")
    return [
        models_dir,
        Path(llama_cache),
        home / ".lmstudio" / "models",
        home / ".cache" / "lm-studio" / "models",
        hf_hub,
    ]


def _ggufs(root: Path, limit: int = 2000) -> list[Path]:
    found: list[Path] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.endswith(".gguf") and "mmproj" not in name:
                found.append(Path(dirpath) / name)
        if len(found) >= limit:
            break
    return found


def rank(path: Path) -> tuple[int, int]:
    """Lower is better: FIM-capable base models first, then smaller files (faster)."""
    name = path.name
    score = 0 if _FIM_NAME.search(name) else 2
    if _INSTRUCT.search(name):
        score += 1
    try:
        size = path.stat().st_size
    except OSError:
        size = 1 << 62
    return score, size


def discover(configured: str | None, models_dir: Path, search_common: bool) -> ModelChoice:
    if configured:
        alias = find_alias(configured)
        if alias is not None:
            path = models_dir / alias.filename
            if path.is_file():
                return ModelChoice(str(path), f"alias {alias.alias}")
            return ModelChoice(
                None,
                f"alias {alias.alias}",
                f"model alias {alias.alias!r} is not downloaded yet: "
                f"run `aiguilleur pull {alias.alias}`",
            )
        path = Path(configured).expanduser()
        if path.is_file():
            return ModelChoice(str(path), "[local] model")
        return ModelChoice(
            None,
            "[local] model",
            f"model file not found: {path}; fix `[local] model` or {HOW_TO_GET_ONE}",
        )
    places = common_places(models_dir) if search_common else [models_dir]
    candidates = [p for place in places for p in _ggufs(place)]
    fim = [p for p in candidates if rank(p)[0] < 2]
    if fim:
        best = min(fim, key=rank)
        return ModelChoice(str(best), f"found in {best.parent}")
    return ModelChoice(None, "search", f"no code model found; {HOW_TO_GET_ONE}")
