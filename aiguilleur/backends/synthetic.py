"""Random-weight GGUF models shaped like real code models.

They let the whole pipeline run, and be measured, where no real model can be
downloaded: tests use a tiny one, the bench one shaped like Qwen2.5-Coder-0.5B (what
costs time per token is the shape, not the weights), and `aiguilleur demo` falls back
to the tiny one. Their suggestions are random bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

FIM_TOKENS = (
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<|endoftext|>",
)


class ModelShape(msgspec.Struct, frozen=True):
    name: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx_train: int = 32768
    quantized: bool = False


TINY = ModelShape(
    "aiguilleur-tiny", n_vocab=512, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=128
)
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
# Slow enough per token (a few ms) that a test can cancel a generation in flight.
SMALL = ModelShape(
    "aiguilleur-small", n_vocab=32_000, n_embd=512, n_layer=4, n_head=8, n_head_kv=2, n_ff=1024
)
QWEN25_CODER_05B = ModelShape(
    "qwen2.5-coder-0.5b-shaped",
    n_vocab=151_936,
    n_embd=896,
    n_layer=24,
    n_head=14,
    n_head_kv=2,
    n_ff=4864,
    quantized=True,
)


def _vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    tokens += list(FIM_TOKENS)
    types += [TokenType.CONTROL] * len(FIM_TOKENS)
    # Filler up to the real vocabulary size: the output layer's cost grows with it.
    filler = n_vocab - len(tokens)
    if filler < 0:
        raise ValueError(f"n_vocab must be at least {len(tokens)}")
    tokens += [f"<unused{i}>" for i in range(filler)]
    types += [TokenType.UNUSED] * filler
    return tokens, [0.0] * len(tokens), [int(t) for t in types]


def write_model(path: Path, shape: ModelShape, seed: int = 0) -> Path:
    """Write `shape` with random weights to `path` (atomically) and return it."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = GGUFWriter(str(tmp), "llama")
    writer.add_name(shape.name)
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(7 if shape.quantized else 0)  # MOSTLY_Q8_0 / ALL_F32

    tokens, scores, types = _vocab(shape.n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    # Without this, SentencePiece-style tokenizers prepend a space to every text.
    writer.add_add_space_prefix(False)
    fim = {t: 259 + i for i, t in enumerate(FIM_TOKENS)}
    writer.add_uint32("tokenizer.ggml.fim_pre_token_id", fim["<|fim_prefix|>"])
    writer.add_uint32("tokenizer.ggml.fim_suf_token_id", fim["<|fim_suffix|>"])
    writer.add_uint32("tokenizer.ggml.fim_mid_token_id", fim["<|fim_middle|>"])
    writer.add_uint32("tokenizer.ggml.fim_pad_token_id", fim["<|fim_pad|>"])
    writer.add_uint32("tokenizer.ggml.fim_rep_token_id", fim["<|repo_name|>"])
    writer.add_uint32("tokenizer.ggml.fim_sep_token_id", fim["<|file_sep|>"])
    writer.add_eot_token_id(fim["<|endoftext|>"])

    def tensor(name: str, *shape_: int, norm: bool = False, rows: Any = None) -> None:
        if norm:
            writer.add_tensor(name, np.ones(shape_, dtype=np.float32))
            return
        data = rng.standard_normal(shape_, dtype=np.float32) * 0.02
        if rows is not None:
            data *= rows[:, None]
        if shape.quantized:
            q = quantize(data, GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, data)

    e, f, v = shape.n_embd, shape.n_ff, shape.n_vocab
    kv = e // shape.n_head * shape.n_head_kv
    # numpy shapes are (rows, cols) = GGUF's (ne1, ne0) reversed.
    tensor("token_embd.weight", v, e)
    tensor("output_norm.weight", e, norm=True)
    # Output rows weighted so that the random model writes printable ASCII and never
    # ends early: its suggestions are visible, and every request costs the same tokens.
    rows = np.zeros(v, dtype=np.float32)
    rows[3:259] = 0.25
    rows[3 + 0x20 : 3 + 0x7F] = 4.0
    rows[3 + 0x0A] = 2.0
    tensor("output.weight", v, e, rows=rows)
    for i in range(shape.n_layer):
        tensor(f"blk.{i}.attn_norm.weight", e, norm=True)
        tensor(f"blk.{i}.attn_q.weight", e, e)
        tensor(f"blk.{i}.attn_k.weight", kv, e)
        tensor(f"blk.{i}.attn_v.weight", kv, e)
        tensor(f"blk.{i}.attn_output.weight", e, e)
        tensor(f"blk.{i}.ffn_norm.weight", e, norm=True)
        tensor(f"blk.{i}.ffn_gate.weight", f, e)
        tensor(f"blk.{i}.ffn_up.weight", f, e)
        tensor(f"blk.{i}.ffn_down.weight", e, f)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)
    return path


def ensure_model(directory: Path, shape: ModelShape) -> Path:
    """The model file for `shape` in `directory`, written once and reused."""
    path = directory / f"{shape.name}.gguf"
    if not path.exists():
        write_model(path, shape)
    return path
