"""A state restored from bytes is the state that was saved: the model predicts the same
next token from it, with the same logits, as after evaluating the whole prompt afresh."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from aiguilleur.backends.llama_model import EngineSettings, load_model
from aiguilleur.backends.llama_native import last_logits
from aiguilleur.backends.llama_state import kv_namespace, restore, snapshot

SETTINGS = EngineSettings(n_ctx=1024, n_batch=64)


def prompt_tokens(n: int) -> list[int]:
    rng = np.random.default_rng(7)
    return [int(t) for t in rng.integers(3, 250, size=n)]


def evaluate(llm: object, tokens: list[int], batch: int = 64) -> None:
    for i in range(0, len(tokens), batch):
        llm.eval(tokens[i : i + batch])  # type: ignore[attr-defined]


def test_restored_state_gives_the_same_next_token_logits(tiny_model: Path) -> None:
    tokens = prompt_tokens(300)
    first, _, _ = load_model(tiny_model, SETTINGS)
    evaluate(first, tokens[:250])
    saved_tokens, data = snapshot(first)
    assert saved_tokens.tolist() == tokens[:250]
    evaluate(first, tokens[250:])
    fresh = last_logits(first).copy()

    # Another Llama, as after a restart: restore the 250 tokens, evaluate the other 50.
    second, _, _ = load_model(tiny_model, SETTINGS)
    assert restore(second, saved_tokens.tolist(), data)
    assert second.n_tokens == 250
    evaluate(second, tokens[250:])
    restored = last_logits(second)
    assert int(np.argmax(restored)) == int(np.argmax(fresh))
    np.testing.assert_allclose(restored, fresh, rtol=1e-4, atol=1e-4)

    # And a state restored then cut back to a shorter common prefix is still exact.
    third, _, _ = load_model(tiny_model, SETTINGS)
    assert restore(third, saved_tokens.tolist(), data)
    third.n_tokens = 200  # the next eval drops the cells after position 200
    evaluate(third, tokens[200:])
    np.testing.assert_allclose(last_logits(third), fresh, rtol=1e-4, atol=1e-4)


def test_bytes_from_another_model_are_refused(tiny_model: Path, small_model: Path) -> None:
    tokens = prompt_tokens(100)
    small, _, _ = load_model(small_model, SETTINGS)
    evaluate(small, tokens)
    saved_tokens, data = snapshot(small)
    tiny, _, _ = load_model(tiny_model, SETTINGS)
    assert not restore(tiny, saved_tokens.tolist(), data)
    assert tiny.n_tokens == 0


def test_state_size_is_about_the_kv_cells_not_the_logits(tiny_model: Path) -> None:
    llm, _, _ = load_model(tiny_model, SETTINGS)
    evaluate(llm, prompt_tokens(200))
    _, data_200 = snapshot(llm)
    evaluate(llm, prompt_tokens(100))
    _, data_300 = snapshot(llm)
    per_token = (len(data_300) - len(data_200)) / 100
    # n_layer x (k + v) x n_embd_kv x 2 bytes (f16), nothing proportional to the vocabulary.
    assert per_token == pytest.approx(len(data_300) / 300, rel=0.1)
    assert len(data_300) < 300 * per_token * 1.1


def test_namespace_changes_with_the_model_file(tiny_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / tiny_model.name
    copy.write_bytes(tiny_model.read_bytes())
    st = tiny_model.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    a = kv_namespace(tiny_model)
    assert "/" not in a
    assert kv_namespace(copy) == a  # the same file elsewhere: its states fit
    with copy.open("r+b") as f:  # same size, same mtime, one byte of the header changed
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert kv_namespace(copy) != a
