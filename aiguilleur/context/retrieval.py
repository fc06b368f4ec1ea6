"""What the code at the cursor depends on, from the repository index: the definitions of
the names it imports from other files of the workspace and uses near the cursor, with the
members of the classes among them, rendered as short stubs (signatures and first
docstring lines) grouped per file, within a budget.

Cheap by design, since it runs for a request: the cursor file's imports are read with a
line scan (not a parse: the file changes at every keystroke), the names near the cursor
with a regular expression, and the index answers from memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from aiguilleur.context.cursor_scan import (
    Imported,
    Receiver,
    Scope,
    class_bases,
    lines_with,
    receiver_at,
    receivers_in,
    returned_classes,
    said_calls,
    said_classes,
    scan_imports,
    scope_at,
)
from aiguilleur.context.definitions import Definition, DefinitionKind, Import
from aiguilleur.context.grammars import grammar_symbols, supported
from aiguilleur.context.index import IndexedFile, RepositoryIndex
from aiguilleur.context.stubs import Found, Pick, Relevance, Stub, as_chunks, render, subwords
from aiguilleur.types import ContextChunk

# How far above the cursor names count as used near it (the function being written and
# what leads to it), and below it.
LINES_ABOVE = 60
LINES_BELOW = 10
# To fit a budget in tokens without the tokenizer: Qwen2.5-Coder's reads 3.7 characters
# of stubs per token (httpx's blocks, 23,242 tokens): a little fewer, so the block fits.
CHARS_PER_TOKEN = 3.5

# Where a JavaScript, TypeScript, Go or Rust file's imports are looked for: its head.
IMPORTS_HEAD_CHARS = 32_000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMPORT_LINE = re.compile(r"(?m)^[ \t]*(?:from|import)[ \t]")
_DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)+)")


def module_file(index: RepositoryIndex, module: str, importer: str) -> IndexedFile | None:
    """The indexed file of `module` as imported from the file `importer` (relative)."""
    if importer.endswith(_SCRIPTS):
        return _script_module(index, module, importer)
    if importer.endswith(".rs"):
        return _rust_module(index, module, importer)
    if module.startswith("."):
        level = len(module) - len(module.lstrip("."))
        base = importer.split("/")[:-level] if level else importer.split("/")
        parts = [*base, *[p for p in module.lstrip(".").split(".") if p]]
        candidates = ["/".join(parts)]
    else:
        dotted = module.replace(".", "/")
        # A package may sit at the root, under src/, or deeper (`libs/x/x/`, a vendored
        # copy `pkg/_vendor/x/`): the directories holding one of that name, the nearest
        # to the importer first.
        top = module.split(".")[0]
        parents = sorted(index.packages().get(top, ()), key=lambda d: -_shared(d, importer))
        candidates = [dotted, f"src/{dotted}", *(f"{d}/{dotted}" for d in parents if d)]
    for c in candidates:
        for path in (f"{c}.py", f"{c}/__init__.py", f"{c}.pyi"):
            found = index.get(path)
            if found is not None:
                return found
    return None


def _script_module(index: RepositoryIndex, module: str, importer: str) -> IndexedFile | None:
    """A JavaScript or TypeScript module imported by a relative path (`./store`,
    `../lib/util.js` for util.ts, `./widgets` for widgets/index.ts); None for a package
    (`react`), which lives outside the workspace's sources."""
    if not module.startswith("."):
        return None
    parts = importer.split("/")[:-1]
    for part in module.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    base = "/".join(parts)
    stem = next((base[: -len(s)] for s in _SCRIPTS if base.endswith(s)), base)
    for path in (base, *(stem + s for s in _SCRIPTS), *(f"{base}/index{s}" for s in _SCRIPTS)):
        found = index.get(path)
        if found is not None:
            return found
    return None


def _rust_module(index: RepositoryIndex, module: str, importer: str) -> IndexedFile | None:
    """A Rust module a `use` names within its crate (`crate::store`, `super::item`,
    `self::parts`): its file, `store.rs` or `store/mod.rs`; None for another crate."""
    steps = module.split("::")
    folders, name = importer.split("/")[:-1], importer.rsplit("/", 1)[-1]
    # Where the importer's own submodules live: beside a mod.rs, lib.rs or main.rs,
    # else in the folder named after the file.
    here = folders if name in ("mod.rs", "lib.rs", "main.rs") else [*folders, name[:-3]]
    if steps[0] == "crate":
        if "src" not in folders:
            return None
        here = folders[: len(folders) - folders[::-1].index("src")]
        steps = steps[1:]
    elif steps[0] in ("self", "super"):
        while steps and steps[0] in ("self", "super"):
            here = here[:-1] if steps[0] == "super" else here
            steps = steps[1:]
    else:
        return None
    base = "/".join([*here, *steps])
    for path in (f"{base}.rs", f"{base}/mod.rs"):
        found = index.get(path)
        if found is not None:
            return found
    return None


def _shared(directory: str, path: str) -> int:
    """How many leading directories `path` shares with `directory`."""
    n = 0
    for a, b in zip(directory.split("/"), path.split("/")[:-1], strict=False):
        if a != b:
            break
        n += 1
    return n


def _submodule(module: str, *parts: str) -> str:
    """`pkg` + `sub` -> `pkg.sub`; `.` + `sub` -> `.sub` (relative)."""
    for part in parts:
        module = f"{module}{part}" if module.endswith(".") else f"{module}.{part}"
    return module


def _by_distance(text: str, offset: int, names: Iterable[str]) -> list[str]:
    """`names` (the file's imported ones) ordered by how close to the cursor they are used,
    then those used nowhere but in their import. One pass over the text."""
    wanted = set(names)
    distance = dict.fromkeys(wanted, len(text) + 1)
    import_lines = {m.start() for m in _IMPORT_LINE.finditer(text)}
    line_start = 0
    for m in _IDENTIFIER.finditer(text):
        name = m.group(0)
        if name not in wanted:
            continue
        line_start = text.rfind("\n", 0, m.start()) + 1
        if line_start in import_lines or (m.start() > 0 and text[m.start() - 1] == "."):
            continue
        d = abs(m.start() - offset)
        if d < distance[name]:
            distance[name] = d
    return sorted(distance, key=lambda n: distance[n])


def _near(text: str, offset: int) -> list[str]:
    """Identifiers near the cursor, the closest first."""
    start = offset
    for _ in range(LINES_ABOVE):
        start = text.rfind("\n", 0, start)
        if start <= 0:
            start = 0
            break
    end = offset
    for _ in range(LINES_BELOW):
        nxt = text.find("\n", end + 1)
        if nxt < 0:
            end = len(text)
            break
        end = nxt
    before = _IDENTIFIER.findall(text[start:offset])[::-1]
    after = _IDENTIFIER.findall(text[offset:end])
    seen: dict[str, None] = {}
    for name in (*before, *after):
        seen.setdefault(name, None)
    return list(seen)


def _chains(text: str, alias: str) -> list[list[str]]:
    """The attribute chains used through `alias` (`m.sub.Name` -> ["sub", "Name"])."""
    around = lines_with(text, f"{alias}.")
    found = [m.group(2) for m in _DOTTED.finditer(around) if m.group(1) == alias]
    return [chain.split(".")[1:] for chain in dict.fromkeys(found)]


def _resolve(
    index: RepositoryIndex, file: IndexedFile, name: str, hops: int = 2
) -> tuple[IndexedFile, Definition] | None:
    """The definition of `name` in `file`, following re-exports (`from .x import name` in
    a package's __init__) up to `hops` times."""
    for d in file.symbols.definitions:
        if d.name == name and not d.scope:
            return file, d
    if hops == 0:
        return None
    for imp in file.symbols.imports:
        if imp.alias == name and imp.name:
            target = module_file(index, imp.module, file.path)
            if target is not None:
                return _resolve(index, target, imp.name, hops - 1)
    for imp in file.symbols.imports:  # `from .core import *`
        target = module_file(index, imp.module, file.path) if imp.name == "*" else None
        found = _resolve(index, target, name, hops - 1) if target is not None else None
        if found is not None:
            return found
    return None


def _module_of(
    index: RepositoryIndex, path: str, imp: Imported, chain: tuple[str, ...] = (), hops: int = 2
) -> IndexedFile | None:
    """The file of the module an imported name binds, `chain` submodules down (`import
    pkg` then `pkg.sub.`): a module file, or a module that a package's __init__ imports
    and so exports (`from .. import logging`, the package having `from .utils import
    logging`)."""
    dotted = _submodule(imp.module, imp.name) if imp.name else imp.module
    module = module_file(index, _submodule(dotted, *chain), path)
    if module is not None or not imp.name or hops == 0:
        return module
    package = module_file(index, imp.module, path)
    if package is None:
        return None
    for inner in package.symbols.imports:
        if inner.alias == imp.name:
            again = Imported(inner.alias, inner.module, inner.name)
            return _module_of(index, package.path, again, chain, hops - 1)
    return None


def _module_picks(index: RepositoryIndex, module: IndexedFile) -> list[Pick]:
    """A module used through its name (`types.`): its own names, then the definitions it
    imports from other files of the workspace, which it exports (a package's __init__
    most often holds nothing else), each in brief."""
    out = [Pick(module, None)]
    for imp in module.symbols.imports:
        source = module_file(index, imp.module, module.path) if imp.name else None
        if source is None:
            continue
        if imp.name == "*":  # `from .core import *`: all of core's names
            out.append(Pick(source, None))
            continue
        found = _resolve(index, source, imp.name)
        if found is not None:
            out.append(Pick(found[0], found[1], brief=True))
    return out


MAX_BASES_DEPTH = 3
SIMILAR = 2  # windows of code like the cursor's a completion's block ends with, room left
SIMILAR_QUERY_CHARS = 1500  # of the code before the cursor, in its function, that a search reads
MIN_WINDOW_ROOM = 400  # characters: a window of a few lines at least
MAX_THROUGH = 4  # classes followed at each step of a dotted receiver


class _Picks:
    """What the block will hold, in order, each once; never the cursor's file, nor a
    file the caller says is private."""

    def __init__(self, path: str, private: Callable[[str], bool] | None) -> None:
        self.path = path
        self.private = private
        self.items: list[Pick] = []
        self._seen: set[tuple[str, str | None]] = set()

    def add(self, pick: Pick) -> None:
        path, d = pick.file.path, pick.definition
        if path == self.path:
            return
        key = (path, None if d is None else f"{d.scope}.{d.name}")
        if key in self._seen or (self.private is not None and self.private(path)):
            return
        self._seen.add(key)
        self.items.append(pick)


def _class_named(
    index: RepositoryIndex,
    name: str,
    imported: dict[str, Imported],
    path: str,
) -> list[Found]:
    """The class `name` as the file `path` sees it: through its import when it imports
    it, else every class of the workspace so named."""
    imp = imported.get(name)
    if imp is not None and imp.name:
        module = module_file(index, imp.module, path)
        found = _resolve(index, module, imp.name) if module is not None else None
        if found is not None and found[1].kind is DefinitionKind.CLASS:
            return [found]
    return _like(path, index.classes().get(name.lower(), []))


_SCRIPTS = (".ts", ".tsx", ".mts", ".js", ".jsx", ".mjs", ".cjs")
_FAMILIES = ((".py", ".pyi"), _SCRIPTS, (".go",), (".rs",))


def _like(path: str, found: list[Found]) -> list[Found]:
    """Those of `found` that code in `path` can use: in a file of the same language."""
    family = next((f for f in _FAMILIES if path.endswith(f)), None)
    if family is None:
        return list(found)
    return [f for f in found if f[0].path.endswith(family)]


def _imports_of(file: IndexedFile) -> dict[str, Imported]:
    return {i.alias: _imported_as(i) for i in file.symbols.imports}


def _imported_as(i: Import) -> Imported:
    # `import Store from "./store"` binds the module's default export, most often
    # declared under the same name (`export default class Store`).
    return Imported(i.alias, i.module, i.alias if i.name == "default" else i.name)


def file_imports(path: str, text: str) -> dict[str, Imported]:
    """The names the text of the file `path` binds by importing them: Python's read by a
    line scan, as the user types; other languages' by their grammar, from the head of
    the file where imports stand."""
    if path.endswith(_FAMILIES[0]) or not supported(path):
        return {i.alias: i for i in scan_imports(text)}
    head = text[:IMPORTS_HEAD_CHARS]
    return {i.alias: _imported_as(i) for i in grammar_symbols(path, head).imports}


def _bases(index: RepositoryIndex, file: IndexedFile, header: str, depth: int) -> list[Found]:
    """The classes a class header names as bases, resolved from `file`'s imports (or
    defined in it), and theirs, `depth` levels up."""
    out: list[Found] = []
    if depth == 0:
        return out
    imported = _imports_of(file)
    for base in class_bases(header):
        *chain, name = base.split(".")
        found: tuple[IndexedFile, Definition] | None = None
        if chain and chain[0] in imported:
            imp = imported[chain[0]]
            dotted = _submodule(imp.module, *([imp.name] if imp.name else []), *chain[1:])
            module = module_file(index, dotted, file.path)
            found = _resolve(index, module, name) if module is not None else None
        elif not chain:
            found = _resolve(index, file, name)
        if found is not None and found[1].kind is DefinitionKind.CLASS:
            out.append(found)
            out += _bases(index, found[0], found[1].signature, depth - 1)
    return out


def _receiver(
    index: RepositoryIndex,
    path: str,
    text: str,
    imported: dict[str, Imported],
    scope: Scope,
    receiver: Receiver,
) -> list[Pick]:
    """What a receiver most likely is: the classes (with their members) or the module
    (with its names) whose members the code after its `.` uses."""
    names, last = receiver.names, receiver.names[-1]
    out: list[Found] = []
    if names in (("self",), ("cls",)):
        here = index.get(path)
        if scope.class_header and here is not None:
            out += _bases(index, here, scope.class_header, MAX_BASES_DEPTH)
        return [Pick(f, d, inside=True) for f, d in out]
    if names[0] in imported and not receiver.called:
        module = _module_of(index, path, imported[names[0]], names[1:])
        if module is not None:
            return _module_picks(index, module)  # `types.`, `pkg.sub.`: the module's names
    if len(names) == 1 and last in imported and not receiver.called and imported[last].name:
        return _with_bases(index, _imported_instance(index, path, imported, last))
    if len(names) > 1 and not receiver.called:  # `self.param.type.`: member by member
        out += _through(index, path, text, imported, scope, names)
    if receiver.called:  # `get_backend().`: what the function returns
        function = _function_named(index, path, text, imported, names, scope)
        if function is not None:
            for name in returned_classes(function[1].signature):
                out += _class_named(index, name, imported, path)
        return _with_bases(index, out)
    for name in said_classes(text, last):
        out += _class_named(index, name, imported, path)
    for called in said_calls(text, last):  # `api = get_api()`: what get_api returns
        function = _function_named(index, path, text, imported, called, scope)
        for name in returned_classes(function[1].signature) if function else []:
            out += _class_named(index, name, imported, path)
    if not out and names[0] == "self" and len(names) == 2 and scope.class_header:
        # `self.fm.` with `fm` set in a base class of another file: what it says fm is.
        here = index.get(path)
        for file, base in _bases(index, here, scope.class_header, MAX_BASES_DEPTH) if here else []:
            for m in file.symbols.definitions:
                if m.scope == base.name and m.name == last:
                    for name in said_classes(m.signature, last, 0):
                        out += _class_named(index, name, _imports_of(file), file.path)
    # A class named like the receiver (`store.` for a Store): the one the file imports
    # when it imports one, else every one of the workspace so named.
    like = last.replace("_", "").lower()
    named = [alias for alias in imported if alias.lower() == like]
    for alias in named:
        out += _class_named(index, alias, imported, path)
    if not named:
        out += _like(path, index.classes().get(like, []))
    return _with_bases(index, out)


def _with_bases(index: RepositoryIndex, classes: list[Found]) -> list[Pick]:
    """Each class followed by its bases: a member the code uses is as often inherited
    (`report.failed` from BaseReport) as defined in the class itself."""
    out: list[Pick] = []
    for file, d in classes:
        out.append(Pick(file, d))
        if d.kind is DefinitionKind.CLASS:
            out += [Pick(f, b) for f, b in _bases(index, file, d.signature, MAX_BASES_DEPTH)]
    return out


def _imported_instance(
    index: RepositoryIndex, path: str, imported: dict[str, Imported], name: str
) -> list[Found]:
    """The class an imported name is (`from .models import Request`) or holds (`from
    ._output import out`, with `out = Output()` there)."""
    imp = imported[name]
    module = module_file(index, imp.module, path)
    found = _resolve(index, module, imp.name) if module is not None else None
    if found is not None and found[1].kind is DefinitionKind.VARIABLE:
        file, d = found
        out: list[Found] = []
        for c in said_classes(d.signature, d.name, 0):
            out += _class_named(index, c, _imports_of(file), file.path)
        return out
    return _class_named(index, name, imported, path)


def _through(
    index: RepositoryIndex,
    path: str,
    text: str,
    imported: dict[str, Imported],
    scope: Scope,
    names: tuple[str, ...],
) -> list[Found]:
    """The classes a dotted receiver ends at, following what each class says its
    members hold (`self.param.type`: the cursor's class says `param` is a Parameter,
    Parameter says `type` is a ParamType), up to a few classes at each step."""
    here = index.get(path)
    current: list[Found] = []
    if names[0] == "self":
        owner = re.match(r"\s*class\s+(\w+)", scope.class_header)
        if here is not None and owner is not None:
            mine = [(here, d) for d in here.symbols.definitions if d.name == owner.group(1)]
            current = mine + _bases(index, here, scope.class_header, MAX_BASES_DEPTH)
    else:
        for name in said_classes(text, names[0]):
            current += _class_named(index, name, imported, path)
    for name in names[1:]:
        following: list[Found] = []
        for file, cls in current[:MAX_THROUGH]:
            for m in file.symbols.definitions:
                if m.scope != cls.name or m.name != name:
                    continue
                said = said_classes(m.signature, name, 0) + returned_classes(m.signature)
                for c in said:
                    following += _class_named(index, c, _imports_of(file), file.path)
        current = following
        if not current:
            break
    return current[:MAX_THROUGH]


def _function_named(
    index: RepositoryIndex,
    path: str,
    text: str,
    imported: dict[str, Imported],
    names: tuple[str, ...],
    scope: Scope,
) -> tuple[IndexedFile, Definition] | None:
    """The function a call's dotted name reaches (`get_backend`, `mod.make`,
    `self.make`: a method of the cursor's class, as the index read this file)."""
    if names[0] == "self" and len(names) == 2 and scope.class_header:
        here = index.get(path)
        owner = re.match(r"\s*class\s+(\w+)", scope.class_header)
        if here is None or owner is None:
            return None
        for m in here.symbols.definitions:
            if m.scope == owner.group(1) and m.name == names[1]:
                return here, m
        return None
    head = imported.get(names[0])
    if head is None:
        here = index.get(path)
        return _resolve(index, here, names[0], 0) if here is not None and len(names) == 1 else None
    base = _submodule(head.module, head.name) if head.name else head.module
    if len(names) == 1 and head.name:
        module = module_file(index, head.module, path)
        return _resolve(index, module, head.name) if module is not None else None
    module = module_file(index, _submodule(base, *names[1:-1]), path)
    return _resolve(index, module, names[-1]) if module is not None else None


def dependencies(
    index: RepositoryIndex,
    path: str,
    text: str,
    offset: int,
    budget_tokens: int,
    private: Callable[[str], bool] | None = None,
    similar: int = 0,
) -> tuple[ContextChunk, ...]:
    """dependency_stubs as one chunk per file (a completion's block ends with `similar`
    windows of code like the cursor's, SIMILAR)."""
    stubs = dependency_stubs(index, path, text, offset, budget_tokens, private, similar=similar)
    return as_chunks(stubs)


def dependency_stubs(
    index: RepositoryIndex,
    path: str,
    text: str,
    offset: int,
    budget_tokens: int,
    private: Callable[[str], bool] | None = None,
    named: tuple[str, ...] = (),
    similar: int = 0,
) -> list[Stub]:
    """Stubs of what the code around `offset` in `text` (the file `path`, relative to the
    index's root) uses from other files of the workspace, grouped per defining file,
    within `budget_tokens` (estimated); never from a file `private` says is.

    In order: the workspace's top-level definitions called by a name in `named` (what a
    question names), what the receiver at the cursor is (`ctx.`: the class of ctx, its bases for
    `self.`, a module's names for `types.`), then what the other receivers of the
    function the cursor is in are, then the definitions of the names the file imports,
    those used closest to the cursor first; then, in the room they leave, at most
    `similar` windows of other files sharing the most words with the code before the
    cursor (BM25)."""
    imported = file_imports(path, text)
    scope = scope_at(text, offset)
    picks = _Picks(path, private)
    for name in named:
        for file, d in index.named(name):
            picks.add(Pick(file, d))
    at = receiver_at(text, offset)
    for receiver in [*([at] if at else []), *receivers_in(text, scope.start, scope.end, offset)]:
        for pick in _receiver(index, path, text, imported, scope, receiver):
            picks.add(pick)
    near = [n for n in _near(text, offset) if n in imported]
    # Then what the rest of the file imports: the members of a class imported and used
    # further away (an attribute's type is rarely named at the line that uses it).
    rest = _by_distance(text, offset, [n for n in imported if n not in set(near)])
    for name in (*near, *rest):
        for file, d in _imported(index, path, text, imported[name]):
            picks.add(Pick(file, d))
    # What the code around the cursor is about: the words of the function it is in.
    around = text[scope.start : scope.end] if scope.key else text[max(0, offset - 3000) : offset]
    relevance = Relevance(subwords(around), index.uses())
    budget = int(budget_tokens * CHARS_PER_TOKEN)
    stubs = render(picks.items, budget, relevance)
    if similar > 0:
        before = text[max(scope.start, offset - SIMILAR_QUERY_CHARS) : offset]
        stubs += similar_windows(index, path, before, stubs, budget, similar, private)
    return stubs


def receiver_definitions(
    index: RepositoryIndex,
    path: str,
    text: str,
    offset: int,
    private: Callable[[str], bool] | None = None,
) -> set[tuple[str, int]]:
    """Where what the receiver right before the cursor is comes from (`ctx.`: ctx's
    class and its bases; `types.`: the module), as the (path, line) of each definition,
    line 0 for a module, as dependency_stubs' stubs name them; empty when there is no
    receiver at the cursor or nothing known of it."""
    at = receiver_at(text, offset)
    if at is None:
        return set()
    imported = file_imports(path, text)
    picks = _Picks(path, private)
    for pick in _receiver(index, path, text, imported, scope_at(text, offset), at):
        picks.add(pick)
    return {(p.file.path, p.definition.line if p.definition else 0) for p in picks.items}


def stubs_size(stubs: list[Stub]) -> int:
    """What `stubs` take of a budget in characters, as render counts it (a header per
    file)."""
    return sum(len(s.text) + 2 for s in stubs) + sum(len(p) + 2 for p in {s.path for s in stubs})


def similar_windows(
    index: RepositoryIndex,
    path: str,
    query: str,
    stubs: list[Stub],
    budget: int,
    most: int,
    private: Callable[[str], bool] | None,
) -> list[Stub]:
    """At most `most` windows sharing the most words with `query` (the code before a
    cursor, a question), of files other than `path` and those `stubs` already show,
    that fit what `stubs` leave of `budget` characters; as stubs without a name."""
    room = budget - stubs_size(stubs)
    if room < MIN_WINDOW_ROOM:  # not worth a search
        return []
    shown = {s.path for s in stubs}
    out: list[Stub] = []
    for w in index.similar(query, most * 4, exclude=path):
        cost = len(w.text) + 2 + len(w.path) + 2
        if cost > room or w.path in shown or (private is not None and private(w.path)):
            continue
        out.append(Stub(w.path, w.text, w.line, ""))
        room -= cost
        if len(out) == most:
            break
    return out


def _imported(index: RepositoryIndex, path: str, text: str, imp: Imported) -> list[Found]:
    """The definition an imported name binds, or what the file uses through it when it
    is a module (`m.sub.Name`)."""
    module_name = imp.module
    if imp.name:  # from module import name
        module = module_file(index, imp.module, path)
        found = _resolve(index, module, imp.name) if module is not None else None
        if found is not None:
            return [found]
        # `from package import submodule`: used as a module below.
        module_name = _submodule(imp.module, imp.name)
    out: list[Found] = []
    for chain in _chains(text, imp.alias):
        for k in range(len(chain) - 1, -1, -1):
            module = module_file(index, _submodule(module_name, *chain[:k]), path)
            if module is not None and module.path != path:
                found = _resolve(index, module, chain[k])
                if found is not None:
                    out.append(found)
                    break
    return out
