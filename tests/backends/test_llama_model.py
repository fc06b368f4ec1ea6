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

from aiguilleur.backends.synthetic import ModelShape, ensure_model

# Small, but quantized (Q8_0) and wide enough for llama.cpp's AMX kernels to take it.
TINY_Q8 = ModelShape(
    "aiguilleur-tiny-q8",
    n_vocab=512,
    n_embd=256,
    n_layer=1,
    n_head=4,
    n_head_kv=2,
    n_ff=512,
    quantized=True,
)

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
