"""Loading and evaluating quantized models: the process must survive whatever the CPU.

On AMX CPUs, the llama.cpp vendored by llama-cpp-python 0.3.36 dies with SIGILL at the
first evaluation of a quantized model through its AMX code (ggml-org/llama.cpp#26954);
load_model keeps it off. Run in a subprocess, so a crash is a failure, not a dead
pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiguilleur.backends.synthetic import TINY_Q8, ensure_model

EVALUATE = """
import sys
from pathlib import Path
from aiguilleur.backends.llama_model import EngineSettings, load_model, next_token
llm, fim, info = load_model(Path(sys.argv[1]), EngineSettings(n_ctx=256, n_batch=64))
llm.eval(list(range(1, 40)))
print("next", next_token(llm, 0.0))
"""


@pytest.fixture(scope="module")
def quantized_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_model(tmp_path_factory.mktemp("models-q8"), TINY_Q8)


def test_a_quantized_model_evaluates_without_killing_the_process(quantized_model: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EVALUATE, str(quantized_model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.startswith("next ")


LOAD_SIDE_BY_SIDE = """
import sys, threading
from pathlib import Path
from aiguilleur.backends.llama_model import EngineSettings, load_model, model_loads, next_token
answers = []
def load_and_evaluate():
    llm, fim, info = load_model(Path(sys.argv[1]), EngineSettings(n_ctx=256, n_batch=64))
    llm.eval(list(range(1, 40)))
    answers.append(next_token(llm, 0.0))
threads = [threading.Thread(target=load_and_evaluate) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("answers", len(answers), len(set(answers)), model_loads().loaded, flush=True)
"""


def test_loads_side_by_side_all_take_the_guard(quantized_model: Path) -> None:
    """Two engines loading at once (a window's settings arriving during the first load)
    once read llama.cpp's CPU features half written, and one loaded with the AMX code on
    and died; and Llama()'s redirection of fds 1 and 2 during a load, done twice at once,
    left them on /dev/null (the answer printed below vanished). Every load of the process
    goes through the same guard, one at a time."""
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", LOAD_SIDE_BY_SIDE, str(quantized_model)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
        assert done.stdout.split() == ["answers", "4", "1", "4"]


def test_the_cpu_features_are_read_the_same_from_every_thread() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from aiguilleur.backends.llama_model import amx_build

    with ThreadPoolExecutor(8) as pool:
        answers = set(pool.map(lambda _: amx_build(), range(64)))
    assert len(answers) == 1
