"""The repository block of a completion prompt, kept while it would come out the same.

It sits at the head of the prompt, so any change to it makes the engine evaluate the
whole prompt again: it is rebuilt only when the cursor enters another function (or
class body, or module level), the file's imports change, the index changes (a file was
saved) or the settings do; a keystroke inside one function reuses it as it is. When it
is rebuilt, the chunks it held that are still wanted keep their place at its head and
the new ones are appended, so what the engine has evaluated of it stays usable.

One more reason to change it does not wait for the cursor to move: a receiver typed
after the block was built (`report.` in a function that named no Report before) whose
class the block lacks. That block is only proposed (`propose`): the editor's requests
keep the old one until the engine has evaluated the new one while the editor was idle,
and then it is adopted (`adopt`), so no keystroke pays for it.
"""

from __future__ import annotations

from collections.abc import Callable

from aiguilleur.context.cursor_scan import imports_key, receiver_at, scope_at
from aiguilleur.context.index import RepositoryIndex
from aiguilleur.context.retrieval import SIMILAR, dependency_stubs, receiver_definitions
from aiguilleur.context.stubs import Stub, as_chunks
from aiguilleur.types import ContextChunk


class RepositoryBlock:
    """The block of one editor session: the user types in one place at a time."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] = ()
        self._stubs: list[Stub] = []
        self._chunks: tuple[ContextChunk, ...] = ()
        # The block proposed for the block of `_key`, and the receiver it was checked for.
        self._proposal: list[Stub] | None = None
        self._checked: tuple[object, ...] = ()
        self.rebuilds = 0  # how many times it was built (tests and benches read it)
        self.adopted = 0  # how many proposals became the block

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
        key = _key(index, path, text, offset, budget_tokens, private_key)
        if key == self._key:
            return self._chunks
        fresh = dependency_stubs(index, path, text, offset, budget_tokens, private, similar=SIMILAR)
        same_file = bool(self._key) and (self._key[0], self._key[2]) == (key[0], key[2])
        self._stubs = _kept_first(self._stubs, fresh) if same_file else fresh
        self._chunks = as_chunks(self._stubs)
        self._key = key
        self._proposal = None
        self.rebuilds += 1
        return self._chunks

    def propose(
        self,
        index: RepositoryIndex,
        path: str,
        text: str,
        offset: int,
        budget_tokens: int,
        private: Callable[[str], bool] | None = None,
        private_key: object = None,
    ) -> tuple[ContextChunk, ...] | None:
        """A block that shows what the receiver at the cursor is when the kept one does
        not (and a fresh block would), for the engine to evaluate while the editor is
        idle; None when the kept block serves, or the next request rebuilds it anyway.
        A receiver is looked up once: asking again at the same one costs nothing."""
        if budget_tokens <= 0:
            return None
        key = _key(index, path, text, offset, budget_tokens, private_key)
        if key != self._key:
            return None
        checked = (key, receiver_at(text, offset))
        if checked != self._checked:
            self._checked = checked
            self._proposal = self._better(index, path, text, offset, budget_tokens, private)
        return None if self._proposal is None else as_chunks(self._proposal)

    def adopt(self, chunks: tuple[ContextChunk, ...]) -> bool:
        """Make the proposed block, whose chunks are `chunks`, the block (the engine has
        evaluated it); False when it is no longer the one proposed."""
        proposal = self._proposal
        if proposal is None or as_chunks(proposal) != chunks:
            return False
        self._stubs, self._chunks, self._proposal = proposal, chunks, None
        self.adopted += 1
        return True

    def _better(
        self,
        index: RepositoryIndex,
        path: str,
        text: str,
        offset: int,
        budget_tokens: int,
        private: Callable[[str], bool] | None,
    ) -> list[Stub] | None:
        wanted = receiver_definitions(index, path, text, offset, private)
        held = {(s.path, s.line) for s in self._stubs if s.name}
        if wanted <= held:
            return None
        fresh = dependency_stubs(index, path, text, offset, budget_tokens, private, similar=SIMILAR)
        if not (wanted & {(s.path, s.line) for s in fresh if s.name}) - held:
            return None  # a fresh block would not show it either
        return _kept_first(self._stubs, fresh)


def _key(
    index: RepositoryIndex,
    path: str,
    text: str,
    offset: int,
    budget_tokens: int,
    private_key: object,
) -> tuple[object, ...]:
    """What the block depends on: while it stays the same, the block is kept."""
    scope = scope_at(text, offset)
    return (
        id(index),
        index.generation,
        path,
        scope.key,
        imports_key(text),
        budget_tokens,
        private_key,
    )


def _kept_first(old: list[Stub], new: list[Stub]) -> list[Stub]:
    """`new`'s stubs, those `old` already held first, in their old order: the prompt's
    head stays what the engine evaluated, as far as it can (a stub added for a file
    already there goes in a chunk of its own at the end, not into the old one)."""
    wanted = set(new)
    kept = [s for s in old if s in wanted]
    held = set(kept)
    return [*kept, *(s for s in new if s not in held)]
