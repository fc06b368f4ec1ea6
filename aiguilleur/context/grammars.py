"""What JavaScript, TypeScript, Go and Rust files define and import, read with tree-sitter
(the grammars of tree-sitter's own packages on PyPI), in the shapes definitions.py gives
Python's: functions, classes (structs, interfaces, traits, enums) with their members,
module-level constants, each with its signature (its text up to its body) and the first
line of the comment right above it; and the imports with the name each binds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from aiguilleur.context.definitions import (
    MAX_SIGNATURE_CHARS,
    Definition,
    DefinitionKind,
    FileSymbols,
    Import,
)

# File suffix -> the grammar's module and the function giving its language.
GRAMMARS: dict[str, tuple[str, str]] = {
    ".js": ("tree_sitter_javascript", "language"),
    ".mjs": ("tree_sitter_javascript", "language"),
    ".cjs": ("tree_sitter_javascript", "language"),
    ".jsx": ("tree_sitter_javascript", "language"),
    ".ts": ("tree_sitter_typescript", "language_typescript"),
    ".mts": ("tree_sitter_typescript", "language_typescript"),
    ".tsx": ("tree_sitter_typescript", "language_tsx"),
    ".go": ("tree_sitter_go", "language"),
    ".rs": ("tree_sitter_rust", "language"),
}

# Node types, across the four grammars.
_FUNCTIONS = {"function_declaration", "generator_function_declaration", "function_item"}
_CLASSES = {
    *("class_declaration", "abstract_class_declaration", "interface_declaration"),
    *("enum_declaration", "struct_item", "trait_item", "enum_item", "union_item"),
}
_MEMBERS = {
    *("method_definition", "method_signature", "abstract_method_signature"),
    *("public_field_definition", "field_definition", "property_signature"),
    *("field_declaration", "method_elem", "function_item", "function_signature_item"),
    *("enum_variant", "enum_assignment"),
}
_ATTRIBUTES = {
    *("public_field_definition", "field_definition", "property_signature"),
    *("field_declaration", "enum_variant", "enum_assignment"),
}
_VARIABLES = {"const_item", "static_item", "type_item", "type_alias_declaration"}
_DECLARATIONS = {
    "lexical_declaration",
    "variable_declaration",
    "const_declaration",
    "var_declaration",
}
_FUNCTION_VALUES = {"arrow_function", "function_expression", "function"}
_COMMENTS = {"comment", "line_comment", "block_comment"}


def supported(path: str) -> bool:
    return any(path.endswith(suffix) for suffix in GRAMMARS)


@cache
def _parser(suffix: str) -> Any:
    """A parser of the grammar for `suffix` (None when its package is missing)."""
    try:
        import importlib

        import tree_sitter

        module, function = GRAMMARS[suffix]
        language = tree_sitter.Language(getattr(importlib.import_module(module), function)())
        return tree_sitter.Parser(language)
    except (ImportError, AttributeError, ValueError):
        return None


def grammar_symbols(path: str, text: str) -> FileSymbols:
    """The definitions and imports of a JavaScript, TypeScript, Go or Rust file's text."""
    suffix = next((s for s in GRAMMARS if path.endswith(s)), "")
    parser = _parser(suffix) if suffix else None
    if parser is None:
        return FileSymbols(error=f"no grammar for {path}")
    source = text.encode("utf-8", errors="replace")
    root = parser.parse(source).root_node
    out: list[Definition] = []
    imports: list[Import] = []
    for node in _top_level(root):
        out += _definitions(node, source)
        imports += _imports(node, source)
    return FileSymbols(tuple(out), tuple(imports), "syntax errors" if root.has_error else "")


def _top_level(root: Any) -> Iterator[Any]:
    """The declarations at the top of a file (`export ...` and Go's groups opened)."""
    for node in root.named_children:
        if node.type in ("export_statement", "type_declaration"):
            yield from node.named_children
        else:
            yield node


def _text(node: Any, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _name(node: Any, source: bytes) -> str:
    found = node.child_by_field_name("name")
    return _text(found, source) if found is not None else ""


def _signature(node: Any, source: bytes) -> str:
    """The node's text up to its body, on one line, cut at MAX_SIGNATURE_CHARS."""
    body = node.child_by_field_name("body")
    end = body.start_byte if body is not None else node.end_byte
    text = " ".join(source[node.start_byte : end].decode("utf-8", errors="replace").split())
    text = text.rstrip(" ={;,")
    return text if len(text) <= MAX_SIGNATURE_CHARS else text[: MAX_SIGNATURE_CHARS - 1] + "…"


def _doc(node: Any, source: bytes) -> str:
    """The first line of the comment that ends on the line above `node` (or above the
    `export` in front of it)."""
    if node.parent is not None and node.parent.type == "export_statement":
        node = node.parent
    before = node.prev_named_sibling
    if before is None or before.type not in _COMMENTS:
        return ""
    if before.end_point[0] + 1 < node.start_point[0]:
        return ""
    for line in _text(before, source).splitlines():
        line = re.sub(r"^\s*(/\*\*?|\*/|\*|///?|//!)\s?", "", line).strip().rstrip("*/").strip()
        if line:
            return line[:MAX_SIGNATURE_CHARS]
    return ""


def _definitions(node: Any, source: bytes) -> list[Definition]:
    kind = node.type
    line, doc = node.start_point[0], _doc(node, source)
    if kind in _FUNCTIONS:
        name = _name(node, source)
        return [Definition(name, DefinitionKind.FUNCTION, _signature(node, source), line, "", doc)]
    if kind == "method_declaration":  # Go: func (s *Store) Get(...)
        receiver = node.child_by_field_name("receiver")
        words = re.findall(r"\w+", _text(receiver, source)) if receiver is not None else []
        scope = words[-1] if words else ""
        sig = _signature(node, source)
        return [Definition(_name(node, source), DefinitionKind.METHOD, sig, line, scope, doc)]
    if kind == "impl_item":  # Rust: its functions are members of its type
        target = node.child_by_field_name("type")
        owner = _text(target, source).split("<")[0] if target is not None else ""
        return _members(node, source, owner)
    if kind == "type_spec":  # Go: a struct or interface is a class, anything else a type
        shape = node.child_by_field_name("type")
        name = _name(node, source)
        if shape is not None and shape.type in ("struct_type", "interface_type"):
            head = f"type {name} {shape.type.removesuffix('_type')}"
            cls = Definition(name, DefinitionKind.CLASS, head, line, "", _doc(node.parent, source))
            return [cls, *_members(shape, source, name)]
        return [Definition(name, DefinitionKind.VARIABLE, f"type {_signature(node, source)}", line)]
    if kind in _CLASSES:
        name = _name(node, source)
        cls = Definition(name, DefinitionKind.CLASS, _signature(node, source), line, "", doc)
        return [cls, *_members(node, source, name)]
    if kind in _VARIABLES:
        sig = _signature(node, source)
        return [Definition(_name(node, source), DefinitionKind.VARIABLE, sig, line, "", doc)]
    if kind in _DECLARATIONS:
        return list(_declared(node, source, doc))
    return []


def _declared(node: Any, source: bytes, doc: str) -> Iterator[Definition]:
    """`const a = 1, f = (x) => x` (JS/TS), `const ( A = 1 )` (Go): each name bound."""
    for child in node.named_children:
        if child.type not in ("variable_declarator", "const_spec", "var_spec"):
            continue
        name = _name(child, source)
        value = child.child_by_field_name("value")
        line = child.start_point[0]
        keyword = source[node.start_byte : node.start_byte + 5].decode().split()[0]
        if value is not None and value.type in _FUNCTION_VALUES:
            params = value.child_by_field_name("parameters")
            args = _text(params, source) if params is not None else "()"
            sig = f"{keyword} {name} = {args} =>"
            yield Definition(name, DefinitionKind.FUNCTION, sig, line, "", doc)
        else:
            sig = " ".join(f"{keyword} {_text(child, source)}".split())[:MAX_SIGNATURE_CHARS]
            yield Definition(name, DefinitionKind.VARIABLE, sig, line, "", doc)


def _members(node: Any, source: bytes, owner: str) -> list[Definition]:
    """The members of a class-like node, found in its body (one level down)."""
    body = node.child_by_field_name("body")
    holders = [body] if body is not None else [node]
    out: list[Definition] = []
    for holder in holders:
        for child in _children(holder):
            if child.type not in _MEMBERS:
                continue
            name = _name(child, source) or _text(child, source).split(":")[0].split()[0]
            kind = DefinitionKind.ATTRIBUTE if child.type in _ATTRIBUTES else DefinitionKind.METHOD
            sig = _signature(child, source)
            out.append(
                Definition(name, kind, sig, child.start_point[0], owner, _doc(child, source))
            )
    return out


def _children(node: Any) -> Iterator[Any]:
    """Named children, those of a list node (Go's field lists) opened."""
    for child in node.named_children:
        if child.type in ("field_declaration_list", "declaration_list", "enum_variant_list"):
            yield from child.named_children
        else:
            yield child


def _imports(node: Any, source: bytes) -> list[Import]:
    kind = node.type
    if kind == "import_statement":  # JS/TS
        where = node.child_by_field_name("source")
        module = _text(where, source).strip("'\"") if where is not None else ""
        return list(_js_imports(node, source, module))
    if kind == "import_declaration":  # Go
        out = []
        for spec in _walk(node, lambda n: n.type == "import_spec"):
            path = spec.child_by_field_name("path")
            module = _text(path, source).strip('"`') if path is not None else ""
            alias = _name(spec, source) or module.rsplit("/", 1)[-1]
            out.append(Import(module, "", alias))
        return out
    if kind == "use_declaration":  # Rust: use a::b::{C, D as E};
        argument = node.child_by_field_name("argument")
        return _rust_uses(_text(argument, source)) if argument is not None else []
    return []


def _js_imports(node: Any, source: bytes, module: str) -> Iterator[Import]:
    for clause in node.named_children:
        if clause.type != "import_clause":
            continue
        for part in clause.named_children:
            if part.type == "identifier":
                yield Import(module, "default", _text(part, source))
            elif part.type == "namespace_import":
                yield Import(module, "", _text(part, source).split()[-1])
            elif part.type == "named_imports":
                for spec in part.named_children:
                    name = _name(spec, source)
                    alias = spec.child_by_field_name("alias")
                    yield Import(module, name, _text(alias, source) if alias else name)


def _rust_uses(argument: str) -> list[Import]:
    """`a::b::{C, D as E}` -> C and E from a::b; `a::b::C` -> C from a::b."""
    argument = " ".join(argument.split())
    if "{" in argument:
        base, _, rest = argument.partition("::{")
        parts = [p.strip() for p in rest.rstrip("}").split(",") if p.strip()]
    else:
        base, _, last = argument.rpartition("::")
        parts = [last]
    out = []
    for part in parts:
        words = part.split()
        name = words[0].split("::")[-1]
        alias = words[2] if len(words) == 3 and words[1] == "as" else name
        if name not in ("self", "*"):
            out.append(Import(base, name, alias))
    return out


def _walk(node: Any, wanted: Callable[[Any], bool]) -> Iterator[Any]:
    for child in node.named_children:
        if wanted(child):
            yield child
        else:
            yield from _walk(child, wanted)
