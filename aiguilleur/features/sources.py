"""What a chat or a code action is told of the rest of the repository: the definitions
of other files that its code uses (and that its question names), then, in the room they
leave, windows of code of other files sharing the most words with the question and the
code (BM25), from the repository index, within a budget; with the list of those sources,
so that the user sees what was sent. Never from a private file (the index holds none,
and the session's own globs are checked again); never anything shaped like a secret
(the index keeps none).
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from aiguilleur.context.index import RepositoryIndex
from aiguilleur.context.privacy import is_private
from aiguilleur.context.retrieval import (
    CHARS_PER_TOKEN,
    SIMILAR,
    dependency_stubs,
    similar_windows,
)
from aiguilleur.context.stubs import Stub
from aiguilleur.languages import language_of

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
MAX_NAMED = 12  # names of a question looked up in the index


class Sources(msgspec.Struct, frozen=True):
    """The block for a prompt ("" when there is nothing to tell) and its sources."""

    prompt: str = ""
    stubs: tuple[Stub, ...] = ()

    def listed(self) -> str:
        """`path:line name` of each source (a window of code has no name), for the user."""
        return ", ".join(
            f"`{s.path}:{s.line + 1}`" + (f" {s.name}" if s.name else "") for s in self.stubs
        )


def sources_for(
    index: RepositoryIndex | None,
    file: Path,
    file_text: str,
    code: str,
    question: str,
    budget_tokens: int,
    private_globs: tuple[str, ...],
) -> Sources:
    """What `code` (of `file`, whose text is `file_text`) uses from other files, and
    the definitions `question` names, within `budget_tokens`."""
    if index is None or budget_tokens <= 0:
        return Sources()
    path = index.relative(file)
    if path is None:
        return Sources()
    # The code after the file's text: its names are then the nearest to the "cursor",
    # resolved through the file's own imports.
    text = f"{file_text}\n{code}"
    named = tuple(dict.fromkeys(_WORD.findall(question)))[:MAX_NAMED]

    def private(rel: str) -> bool:
        return is_private(rel, private_globs)

    stubs = dependency_stubs(
        index, path, text, len(text), budget_tokens, private=private, named=named
    )
    # In the room left: code of other files that shares the most words with the question
    # and the code (the files most relevant to it).
    budget = int(budget_tokens * CHARS_PER_TOKEN)
    windows = similar_windows(index, path, f"{code}\n{question}", stubs, budget, SIMILAR, private)
    if not stubs and not windows:
        return Sources()
    fence = (language_of(path) or "").lower()
    prompt = ""
    if stubs:
        body = "\n\n".join(f"# {stub.path}\n{stub.text}" for stub in stubs)
        prompt += (
            "Definitions from other files of this project that this code uses (signatures "
            f"and first docstring lines only):\n\n```{fence}\n{body}\n```\n\n"
        )
    if windows:
        body = "\n\n".join(f"# {w.path}, from line {w.line + 1}\n{w.text}" for w in windows)
        prompt += (
            "Code from other files of this project that shares the most words with this "
            f"question and code:\n\n```{fence}\n{body}\n```\n\n"
        )
    return Sources(prompt, (*stubs, *windows))
