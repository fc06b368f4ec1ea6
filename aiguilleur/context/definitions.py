"""What a source file defines and imports, as a model needs it to call the code correctly:
each definition's signature (its name, parameters and return type; a class's bases) and
the first line of its docstring, never its body.

Python through its own parser (`ast`): functions, classes, methods, class attributes and
the attributes `__init__` (or any method) sets on `self`, module-level names; and the
imports, with the name each binds in the file.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from enum import StrEnum

import msgspec

# A signature longer than this is cut: a default value can hold a whole table.
MAX_SIGNATURE_CHARS = 300
MAX_USES = 400


class DefinitionKind(StrEnum):
    FUNCTION = "function"
    CLASS = "class"
    METHOD = "method"
    ATTRIBUTE = "attribute"  # of a class: declared in its body or set on self
    VARIABLE = "variable"  # at module level (constants too)


class Definition(msgspec.Struct, frozen=True):
    name: str
    kind: DefinitionKind
    signature: str  # as the parser reads it back, e.g. "def read(self, n: int=-1) -> bytes"
    line: int  # 0-based, the line of the `def`/`class`/assignment
    scope: str = ""  # the enclosing class, for methods and attributes
    doc: str = ""  # the first line of the docstring


class Import(msgspec.Struct, frozen=True):
    """`from module import name as alias` binds `alias`; `import module as alias` too."""

    module: str  # absolute ("pkg.mod") or relative (".mod", "..")
    name: str  # "" for `import module`
    alias: str  # the name bound in the file


class FileSymbols(msgspec.Struct, frozen=True):
    definitions: tuple[Definition, ...] = ()
    imports: tuple[Import, ...] = ()
    error: str = ""  # why the file could not be parsed (its definitions are then unknown)
    # The attribute names the file uses (`x.name`), the most used first, at most MAX_USES:
    # across the workspace, how many files use a member says how likely a line is to.
    uses: tuple[str, ...] = ()


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SIGNATURE_CHARS else text[: MAX_SIGNATURE_CHARS - 1] + "…"


def _doc(node: ast.AST) -> str:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            return _short(doc.strip().split("\n", 1)[0])
    return ""


def _function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    head = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
    return _short(f"{head} {node.name}({ast.unparse(node.args)}){returns}")


def _class(node: ast.ClassDef) -> str:
    bases = [ast.unparse(b) for b in node.bases] + [ast.unparse(k) for k in node.keywords]
    return _short(f"class {node.name}({', '.join(bases)})" if bases else f"class {node.name}")


def _assigned(node: ast.stmt) -> list[tuple[str, str]]:
    """(name, signature) of the plain names an assignment binds."""
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        value = f" = {ast.unparse(node.value)}" if node.value is not None else ""
        return [
            (node.target.id, _short(f"{node.target.id}: {ast.unparse(node.annotation)}{value}"))
        ]
    if isinstance(node, ast.Assign):
        text = _short(ast.unparse(node))
        return [(t.id, text) for t in node.targets if isinstance(t, ast.Name)]
    return []


def _self_attributes(method: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[str, str, int]]:
    """(name, signature, line) of `self.name = ...` in a method."""
    if not method.args.args:
        return []
    me = method.args.args[0].arg
    found = []
    for node in ast.walk(method):
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == me:
                found.append((t.attr, _short(ast.unparse(node)), node.lineno - 1))
    return found


def python_symbols(source: str) -> FileSymbols:
    """The definitions and imports of a Python module's text."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError) as error:  # ValueError: NUL bytes
        return FileSymbols(error=f"{type(error).__name__}: {error}")
    out: list[Definition] = []
    imports: list[Import] = []
    for node in _module_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append(
                Definition(
                    node.name,
                    DefinitionKind.FUNCTION,
                    _function(node),
                    node.lineno - 1,
                    "",
                    _doc(node),
                )
            )
        elif isinstance(node, ast.ClassDef):
            out += _class_definitions(node)
        else:
            for name, signature in _assigned(node):
                out.append(Definition(name, DefinitionKind.VARIABLE, signature, node.lineno - 1))
    uses: Counter[str] = Counter()
    for found in ast.walk(tree):
        if isinstance(found, ast.Attribute):
            uses[found.attr] += 1
        elif isinstance(found, ast.Import):
            for a in found.names:
                imports.append(Import(a.name, "", a.asname or a.name.split(".")[0]))
        elif isinstance(found, ast.ImportFrom):
            module = "." * found.level + (found.module or "")
            for a in found.names:
                imports.append(Import(module, a.name, a.asname or a.name))
    used = tuple(name for name, _ in uses.most_common(MAX_USES))
    return FileSymbols(tuple(out), tuple(imports), uses=used)


def _module_level(body: list[ast.stmt], depth: int = 2) -> Iterator[ast.stmt]:
    """The statements of a module's body, and of the `if`/`try` blocks in it (`if
    TYPE_CHECKING:`, `try: ... except ImportError:`), where a module defines many of its
    classes and functions, `depth` levels down."""
    for node in body:
        if depth > 0 and isinstance(node, ast.If):
            yield from _module_level([*node.body, *node.orelse], depth - 1)
        elif depth > 0 and isinstance(node, ast.Try):
            handlers = [n for h in node.handlers for n in h.body]
            yield from _module_level(
                [*node.body, *handlers, *node.orelse, *node.finalbody], depth - 1
            )
        else:
            yield node


def _class_definitions(node: ast.ClassDef) -> list[Definition]:
    out = [
        Definition(node.name, DefinitionKind.CLASS, _class(node), node.lineno - 1, "", _doc(node))
    ]
    seen: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append(
                Definition(
                    item.name,
                    DefinitionKind.METHOD,
                    _function(item),
                    item.lineno - 1,
                    node.name,
                    _doc(item),
                )
            )
        else:
            for name, signature in _assigned(item):
                if name not in seen:
                    seen.add(name)
                    out.append(
                        Definition(
                            name, DefinitionKind.ATTRIBUTE, signature, item.lineno - 1, node.name
                        )
                    )
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            for name, signature, line in _self_attributes(item):
                if name not in seen:
                    seen.add(name)
                    out.append(
                        Definition(name, DefinitionKind.ATTRIBUTE, signature, line, node.name)
                    )
    return out
