"""The repository block's stubs: a definition as the model is shown it (a function's
signature and first docstring line; a class's with its members one line each, the likely
ones first; a module's top-level names), in the file's own language's shape, fitted to
a budget in characters; and stubs gathered into one chunk per file."""

from __future__ import annotations

import re

import msgspec

from aiguilleur.context.definitions import Definition, DefinitionKind
from aiguilleur.context.index import IndexedFile
from aiguilleur.types import ContextChunk

MEMBER_CHARS = 100  # a member's signature in a class's stub is cut after this
MODULE_NAMES = 80  # a module's stub lists at most this many top-level names

Found = tuple[IndexedFile, Definition]


class Pick(msgspec.Struct, frozen=True):
    """What goes in the block: a definition of a file, or (None) the file as a module,
    all its top-level names. `inside`: seen from a subclass (`self.`), whose code uses
    the private members too."""

    file: IndexedFile
    definition: Definition | None
    inside: bool = False
    brief: bool = False  # a class's head alone: a name a module exports, among many


def _short(signature: str) -> str:
    """A member's signature in a class's stub: its parameters' names and types are what
    a call needs; a long default or annotation is cut."""
    if len(signature) <= MEMBER_CHARS:
        return signature
    head, arrow, returned = signature.rpartition(") -> ")
    if not arrow:
        head, returned = signature, ""
    cut = head[: MEMBER_CHARS - 5]
    cut = cut[: cut.rfind(",")] if "," in cut else cut
    return f"{cut}, ...)" + (f" -> {returned}" if returned and len(returned) < 40 else "")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _member_line(m: Definition) -> str:
    if m.kind is DefinitionKind.METHOD:
        return f"    {_short(m.signature)}: ..."
    if m.signature.startswith("self."):  # set in a method: its name, and its type if said
        typed = m.signature.split("=", 1)[0].strip().removeprefix("self.")
        return f"    {typed}" if ":" in typed else f"    {m.name} = ..."
    return f"    {m.signature}"


_SUBWORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
# Subwords too common in code to say what a function is about.
_COMMON = frozenset(
    {"self", "cls", "get", "set", "the", "str", "int", "none", "true", "false", "return"}
    | {"def", "for", "not", "and", "with", "from", "import", "list", "dict", "args", "kwargs"}
)


def subwords(text: str) -> frozenset[str]:
    """The lowercased parts of the identifiers of `text` (`list_dataset_files`,
    `listDatasetFiles` -> list, dataset, files), those that say something."""
    return frozenset(
        w for w in (m.lower() for m in _SUBWORD.findall(text)) if len(w) > 2 and w not in _COMMON
    )


def _members(
    file: IndexedFile, d: Definition, inside: bool, relevance: Relevance
) -> list[Definition]:
    """A class's members, those whose names share the most words with the code around
    the cursor first (a class of 200 methods does not fit: the likely ones should), then
    from outside the public ones before the private ones, then in the file's order."""
    own = [m for m in file.symbols.definitions if m.scope == d.name]
    return _ranked(own, relevance, inside)


class Relevance(msgspec.Struct, frozen=True):
    """What ranks a class's members or a module's names: `words`, the subwords of the
    code around the cursor; `uses`, how many files of the workspace use each name."""

    words: frozenset[str] = frozenset()
    uses: dict[str, int] = msgspec.field(default_factory=dict)


def _ranked(names: list[Definition], relevance: Relevance, inside: bool) -> list[Definition]:
    """Those sharing the most words with the code around the cursor first, then those
    the most files use (a private member that half the package calls is as good as
    public), then (seen from outside) the public before the private, then in the file's
    order."""
    order = {id(m): i for i, m in enumerate(names)}
    words, uses = relevance.words, relevance.uses
    return sorted(
        names,
        key=lambda m: (
            -len(subwords(m.name) & words),
            -uses.get(m.name, 0),
            0 if inside else _private(m.name),
            order[id(m)],
        ),
    )


def _stub(pick: Pick, room: int, relevance: Relevance) -> str:
    """A pick as a stub of at most `room` characters ("" when not even its head fits):
    a function's signature and first docstring line; a class's with its members one
    line each, as many as fit (the private ones last, but for a subclass); a module's
    top-level names. In the file's own language's shape: Python's, or braces and `//`
    comments for the others (definitions of JavaScript, TypeScript, Go, Rust)."""
    file, d = pick.file, pick.definition
    if not file.path.endswith((".py", ".pyi")):
        return _brace_stub(pick, room, relevance)
    if d is None:
        lines = [f"# {file.path}"]
        for top in _ranked([t for t in file.symbols.definitions if not t.scope], relevance, True):
            if top.kind is DefinitionKind.FUNCTION or top.kind is DefinitionKind.CLASS:
                lines.append(f"{top.signature}: ...")
            else:
                lines.append(top.signature)
            if len(lines) > MODULE_NAMES:
                break
        return _fit(lines, 2, room) if len(lines) > 1 else ""  # a header alone says nothing
    doc = f'\n    """{d.doc}"""' if d.doc else ""
    if d.kind is DefinitionKind.CLASS:
        head = f"{d.signature}:{doc}"
        if pick.brief:
            stub = f"{head}\n    ..."
            return stub if len(stub) <= room else ""
        members = [_member_line(m) for m in _members(file, d, pick.inside, relevance)]
        return _fit([head, *(members or ["    ..."])], 2, room)
    if d.kind is DefinitionKind.FUNCTION:
        stub = f"{d.signature}:{doc}\n    ..."
        return stub if len(stub) <= room else ""
    return d.signature if len(d.signature) <= room else ""


def _brace_stub(pick: Pick, room: int, relevance: Relevance) -> str:
    file, d = pick.file, pick.definition
    if d is None:
        tops = [t for t in file.symbols.definitions if not t.scope][:MODULE_NAMES]
        return _fit([f"// {file.path}", *(f"{t.signature};" for t in tops)], 2, room)
    doc = f"// {d.doc}\n" if d.doc else ""
    if d.kind is DefinitionKind.CLASS:
        own = _members(file, d, pick.inside, relevance)
        members = [f"    {_short(m.signature)};" for m in own]
        return _fit([f"{doc}{d.signature} {{", *members, "}"], 2, room)
    stub = f"{doc}{d.signature};"
    return stub if len(stub) <= room else ""


def _fit(lines: list[str], least: int, room: int) -> str:
    """As many of `lines` as fit in `room` characters, at least `least` of them."""
    used, kept = 0, 0
    for line in lines:
        if used + len(line) + 1 > room:
            break
        used += len(line) + 1
        kept += 1
    return "\n".join(lines[:kept]) if kept >= min(least, len(lines)) else ""


class Stub(msgspec.Struct, frozen=True):
    """One definition of the file `path`, as the block shows it; `line` (0-based) and
    `name` say where it comes from (0 and the path for a module's names)."""

    path: str
    text: str
    line: int = 0
    name: str = ""


def as_chunks(stubs: list[Stub]) -> tuple[ContextChunk, ...]:
    """Stubs in chunks, those of one file in a row in one."""
    chunks: list[tuple[str, list[str]]] = []
    for stub in stubs:
        if chunks and chunks[-1][0] == stub.path:
            chunks[-1][1].append(stub.text)
        else:
            chunks.append((stub.path, [stub.text]))
    return tuple(ContextChunk(p, "\n\n".join(texts) + "\n") for p, texts in chunks)


def render(picks: list[Pick], budget: int, relevance: Relevance) -> list[Stub]:
    """The picks' stubs that fit `budget` characters, those of a file together, the files
    in the order of their first pick."""
    per_file: dict[str, list[Stub]] = {}
    used = 0
    for pick in picks:
        file, d = pick.file, pick.definition
        header = 0 if file.path in per_file else len(file.path) + 2
        text = _stub(pick, budget - used - header - 2, relevance)
        if not text:
            continue  # a smaller one further down may still fit
        used += len(text) + header + 2
        stub = Stub(file.path, text, d.line if d else 0, d.name if d else file.path)
        per_file.setdefault(file.path, []).append(stub)
    return [stub for stubs in per_file.values() for stub in stubs]
