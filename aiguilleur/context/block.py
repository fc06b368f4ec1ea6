"""The repository block of a completion prompt, kept while it would come out the same.

It sits at the head of the prompt, so any change to it makes the engine evaluate the
whole prompt again: it is rebuilt only when the cursor enters another function (or
class body, or module level), the file's imports change, the index changes (a file was
saved) or the settings do; a keystroke inside one function reuses it as it is. When it
is rebuilt, the chunks it held that are still wanted keep their place at its head and
the new ones are appended, so what the engine has evaluated of it stays usable.
"""

from __future__ import annotations

from collections.abc import Callable

from aiguilleur.context.cursor_scan import imports_key, scope_at
from aiguilleur.context.index import RepositoryIndex
from aiguilleur.context.retrieval import SIMILAR, dependency_stubs
from aiguilleur.context.stubs import Stub, as_chunks
from aiguilleur.types import ContextChunk


class RepositoryBlock:
    """The block of one editor session: the user types in one place at a time."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] = ()
        self._stubs: list[Stub] = []
        self._chunks: tuple[ContextChunk, ...] = ()
        self.rebuilds = 0  # how many times it was built (tests and benches read it)

    @property
    def current(self) -> tuple[ContextChunk, ...]:
        """The block as the last request had it."""
        return self._chunks

    def chunks(
        self,
        index: RepositoryIndex,
        path: str,
        text: str,
        offset: int,
        budget_tokens: int,
        private: Callable[[str], bool] | None = None,
        private_key: object = None,
    ) -> tuple[ContextChunk, ...]:
        """The block for the cursor at `offset` of `text` (the file `path`, relative to
        the index's root); `private_key` changes when what `private` says does."""
        if budget_tokens <= 0:
            return ()
        scope = scope_at(text, offset)
        key = (
            id(index),
            index.generation,
            path,
            scope.key,
            imports_key(text),
            budget_tokens,
            private_key,
        )
        if key == self._key:
            return self._chunks
        fresh = dependency_stubs(index, path, text, offset, budget_tokens, private, similar=SIMILAR)
        same_file = bool(self._key) and (self._key[0], self._key[2]) == (key[0], key[2])
        self._stubs = _kept_first(self._stubs, fresh) if same_file else fresh
        self._chunks = as_chunks(self._stubs)
        self._key = key
        self.rebuilds += 1
        return self._chunks


def _kept_first(old: list[Stub], new: list[Stub]) -> list[Stub]:
    """`new`'s stubs, those `old` already held first, in their old order: the prompt's
    head stays what the engine evaluated, as far as it can (a stub added for a file
    already there goes in a chunk of its own at the end, not into the old one)."""
    wanted = set(new)
    kept = [s for s in old if s in wanted]
    held = set(kept)
    return [*kept, *(s for s in new if s not in held)]
