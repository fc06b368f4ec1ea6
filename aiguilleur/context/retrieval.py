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
from collections.abc import Iterable

import msgspec

from aiguilleur.context.definitions import Definition, DefinitionKind
from aiguilleur.context.index import IndexedFile, RepositoryIndex
from aiguilleur.types import ContextChunk

# How far above the cursor names count as used near it (the function being written and
# what leads to it), and below it.
LINES_ABOVE = 60
LINES_BELOW = 10
CHARS_PER_TOKEN = 4  # to fit a budget in tokens without the tokenizer

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FROM_IMPORT = re.compile(r"^\s*from\s+(\.*[\w.]*)\s+import\s+(.+)$")
_IMPORT = re.compile(r"^\s*import\s+(.+)$")
_IMPORT_LINE = re.compile(r"(?m)^[ \t]*(?:from|import)[ \t]")


class Imported(msgspec.Struct, frozen=True):
    """A name the cursor's file binds by importing it from `module` (`name` there; "" for
    a module)."""

    alias: str
    module: str
    name: str


def scan_imports(text: str) -> list[Imported]:
    """The imports of a Python file's text, read line by line (a parenthesised list may
    span lines)."""
    out: list[Imported] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].split("#", 1)[0]
        i += 1
        if m := _FROM_IMPORT.match(line):
            module, names = m.group(1), m.group(2).strip()
            if names.startswith("("):
                while ")" not in names and i < len(lines):
                    names += " " + lines[i].split("#", 1)[0]
                    i += 1
                names = names.strip("() ")
            for part in names.replace("\\", " ").split(","):
                words = part.split()
                if not words or words[0] == "*":
                    continue
                alias = words[2] if len(words) == 3 and words[1] == "as" else words[0]
                out.append(Imported(alias, module, words[0]))
        elif m := _IMPORT.match(line):
            for part in m.group(1).split(","):
                words = part.split()
                if not words:
                    continue
                if len(words) == 3 and words[1] == "as":
                    out.append(Imported(words[2], words[0], ""))
                else:
                    out.append(Imported(words[0].split(".")[0], words[0].split(".")[0], ""))
    return out


def module_file(index: RepositoryIndex, module: str, importer: str) -> IndexedFile | None:
    """The indexed file of `module` as imported from the file `importer` (relative)."""
    if module.startswith("."):
        level = len(module) - len(module.lstrip("."))
        base = importer.split("/")[:-level] if level else importer.split("/")
        parts = [*base, *[p for p in module.lstrip(".").split(".") if p]]
        candidates = ["/".join(parts)]
    else:
        dotted = module.replace(".", "/")
        # A package may sit at the root or under src/ (or any one directory).
        candidates = [dotted, f"src/{dotted}"]
        top = module.split(".")[0]
        candidates += [
            f"{f.path.split('/')[0]}/{dotted}"
            for f in _package_roots(index, top)
            if f.path.split("/")[0] != "src"
        ]
    for c in candidates:
        for path in (f"{c}.py", f"{c}/__init__.py", f"{c}.pyi"):
            found = index.get(path)
            if found is not None:
                return found
    return None


def _package_roots(index: RepositoryIndex, top: str) -> Iterable[IndexedFile]:
    for f in index.files():
        parts = f.path.split("/")
        if len(parts) >= 3 and parts[1] == top and parts[-1] == "__init__.py":
            yield f


def _submodule(module: str, *parts: str) -> str:
    """`pkg` + `sub` -> `pkg.sub`; `.` + `sub` -> `.sub` (relative)."""
    for part in parts:
        module = f"{module}{part}" if module.endswith(".") else f"{module}.{part}"
    return module


_RECEIVER = re.compile(r"([A-Za-z_]\w*)\s*\.\s*[A-Za-z_]?\w*$")


def receiver_classes(
    index: RepositoryIndex, text: str, offset: int
) -> list[tuple[IndexedFile, Definition]]:
    """Classes the receiver before the cursor most likely is: the class it was annotated
    with or built from in this file (`self.store: KVStore`, `store = KVStore(...)`,
    `def f(store: KVStore)`), else a class named like it (`self.plugin_manager.` ->
    PluginManager; only whole names count)."""
    m = _RECEIVER.search(text[max(0, offset - 200) : offset])
    if m is None or m.group(1) == "self":
        return []
    receiver = m.group(1)
    classes = index.classes()
    found: list[tuple[IndexedFile, Definition]] = []
    typed = re.compile(
        rf"(?<![\w]){re.escape(receiver)}\s*(?::\s*(?:Optional\[)?([A-Z]\w*)|=\s*([A-Z]\w*)\s*\()"
    )
    for t in typed.finditer(text):
        for name in t.groups():
            if name:
                found += [c for c in classes.get(name.lower(), []) if c not in found]
    found += [c for c in classes.get(receiver.replace("_", "").lower(), []) if c not in found]
    return found


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
    found = re.findall(rf"(?<![\w.]){re.escape(alias)}((?:\.[A-Za-z_]\w*)+)", text)
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
    return None


def _stub(file: IndexedFile, d: Definition) -> str:
    """A definition as a stub: its signature and first docstring line; for a class, its
    members too."""
    doc = f'\n    """{d.doc}"""' if d.doc else ""
    if d.kind is DefinitionKind.CLASS:
        members = [m for m in file.symbols.definitions if m.scope == d.name]
        body = []
        for m in members:
            if m.kind is DefinitionKind.METHOD:
                mdoc = f'\n        """{m.doc}"""' if m.doc else ""
                body.append(f"    {m.signature}:{mdoc}\n        ...")
            elif m.signature.startswith("self."):  # set in a method: its name, its type
                typed = m.signature.split("=", 1)[0].strip().removeprefix("self.")
                body.append(f"    {typed}" if ":" in typed else f"    {m.name} = ...")
            else:
                body.append(f"    {m.signature}")
        inner = "\n".join(body) if body else "    ..."
        return f"{d.signature}:{doc}\n{inner}"
    if d.kind is DefinitionKind.FUNCTION:
        return f"{d.signature}:{doc}\n    ..."
    return d.signature


def dependencies(
    index: RepositoryIndex, path: str, text: str, offset: int, budget_tokens: int
) -> tuple[ContextChunk, ...]:
    """Stubs of what the code near `offset` in `text` (the file `path`, relative to the
    index's root) imports from other files of the workspace, the names used closest to
    the cursor first, grouped per defining file, within `budget_tokens` (estimated)."""
    imported = {i.alias: i for i in scan_imports(text)}
    picked: list[tuple[IndexedFile, Definition]] = []
    seen: set[tuple[str, str]] = set()

    def add(found: tuple[IndexedFile, Definition] | None) -> None:
        if found is not None and (found[0].path, found[1].name) not in seen:
            seen.add((found[0].path, found[1].name))
            picked.append(found)

    # `config.` or `self._session.`: a class named like the receiver comes first (what
    # the line is about to use is most likely one of its members).
    for file, d in receiver_classes(index, text, offset):
        if file.path != path:
            add((file, d))

    near = [n for n in _near(text, offset) if n in imported]
    # Then what the rest of the file imports: the members of a class imported and used
    # further away (an attribute's type is rarely named at the line that uses it).
    rest = _by_distance(text, offset, [n for n in imported if n not in set(near)])
    for name in (*near, *rest):
        imp = imported.get(name)
        if imp is None:
            continue
        module_name = imp.module
        if imp.name:  # from module import name
            module = module_file(index, imp.module, path)
            found = _resolve(index, module, imp.name) if module is not None else None
            if found is not None and found[0].path != path:
                add(found)
                continue
            # `from package import submodule`: used as a module below.
            module_name = _submodule(imp.module, imp.name)
        if not imp.name or module_name != imp.module:
            # import module [as alias]: what is used through it, in it or a submodule
            for chain in _chains(text, name):
                for k in range(len(chain) - 1, -1, -1):
                    dotted = _submodule(module_name, *chain[:k])
                    module = module_file(index, dotted, path)
                    if module is not None and module.path != path:
                        found = _resolve(index, module, chain[k])
                        if found is not None:
                            add(found)
                            break
    budget = budget_tokens * CHARS_PER_TOKEN
    per_file: dict[str, list[str]] = {}
    used = 0
    for file, d in picked:
        stub = _stub(file, d)
        cost = len(stub) + (0 if file.path in per_file else len(file.path) + 2)
        if used + cost > budget:
            continue  # a smaller one further down may still fit
        used += cost
        per_file.setdefault(file.path, []).append(stub)
    return tuple(ContextChunk(p, "\n\n".join(stubs) + "\n") for p, stubs in per_file.items())
