"""Definitions and imports of JavaScript, TypeScript, Go and Rust files, read with
tree-sitter's grammars, and what the repository block makes of them."""

from __future__ import annotations

from pathlib import Path

from aiguilleur.context.definitions import DefinitionKind, Import
from aiguilleur.context.grammars import grammar_symbols
from aiguilleur.context.index import RepositoryIndex, store_dir
from aiguilleur.context.retrieval import dependencies

TS = """import { Item, Base as B } from "./item";
import * as util from "../util";
/** Keeps items by key. */
export class Store extends B {
  count: number = 0;
  /** The item under `key`. */
  get(key: string): Item | undefined { return undefined; }
}
export function makeStore(size: number): Store { return new Store(); }
export const double = (x: number) => x * 2;
"""
GO = """package store

import (
\t"fmt"
\tst "strings"
)

// Store keeps items.
type Store struct {
\tCount int
}

// Get returns the item under key.
func (s *Store) Get(key string) Item { return nil }

func New(n int) *Store { return nil }
"""
RUST = """use std::collections::{HashMap, HashSet as Set};
/// A store of items.
pub struct Store { pub count: usize }
impl Store {
    /// Make one.
    pub fn new(n: usize) -> Self { todo!() }
}
pub trait Getter { fn get(&self, key: &str) -> Option<usize>; }
"""


def _kinds(path: str, text: str) -> dict[tuple[str, str], DefinitionKind]:
    return {(d.scope, d.name): d.kind for d in grammar_symbols(path, text).definitions}


def test_typescript_classes_functions_and_imports() -> None:
    symbols = grammar_symbols("src/store.ts", TS)
    found = {(d.scope, d.name): d for d in symbols.definitions}
    store, get = found[("", "Store")], found[("Store", "get")]
    assert store.kind is DefinitionKind.CLASS and store.signature == "class Store extends B"
    assert store.doc == "Keeps items by key."
    assert get.kind is DefinitionKind.METHOD and get.doc == "The item under `key`."
    assert get.signature == "get(key: string): Item | undefined"
    assert found[("Store", "count")].kind is DefinitionKind.ATTRIBUTE
    assert found[("", "makeStore")].signature == "function makeStore(size: number): Store"
    assert found[("", "double")].kind is DefinitionKind.FUNCTION
    assert symbols.imports == (
        Import("./item", "Item", "Item"),
        Import("./item", "Base", "B"),
        Import("../util", "", "util"),
    )
    assert _kinds("a.js", "export function f(a) { return a }\n") == {
        ("", "f"): DefinitionKind.FUNCTION
    }


def test_go_structs_methods_and_imports() -> None:
    symbols = grammar_symbols("store.go", GO)
    found = {(d.scope, d.name): d for d in symbols.definitions}
    assert found[("", "Store")].kind is DefinitionKind.CLASS
    assert found[("", "Store")].doc == "Store keeps items."
    get = found[("Store", "Get")]
    assert get.kind is DefinitionKind.METHOD and get.doc == "Get returns the item under key."
    assert get.signature == "func (s *Store) Get(key string) Item"
    assert found[("Store", "Count")].kind is DefinitionKind.ATTRIBUTE
    assert found[("", "New")].signature == "func New(n int) *Store"
    assert symbols.imports == (Import("fmt", "", "fmt"), Import("strings", "", "st"))


def test_rust_structs_impls_traits_and_uses() -> None:
    symbols = grammar_symbols("lib.rs", RUST)
    found = {(d.scope, d.name): d for d in symbols.definitions}
    assert found[("", "Store")].doc == "A store of items."
    new = found[("Store", "new")]  # from the impl block
    assert new.kind is DefinitionKind.METHOD and new.signature == "pub fn new(n: usize) -> Self"
    assert new.doc == "Make one."
    assert found[("Getter", "get")].signature == "fn get(&self, key: &str) -> Option<usize>"
    assert symbols.imports == (
        Import("std::collections", "HashMap", "HashMap"),
        Import("std::collections", "HashSet", "Set"),
    )


def test_broken_code_still_gives_what_it_can() -> None:
    symbols = grammar_symbols("x.ts", "export function ok(a: number) {}\nclass {{{ broken\n")
    assert ("", "ok") in {(d.scope, d.name) for d in symbols.definitions}
    assert symbols.error == "syntax errors"
    assert grammar_symbols("x.go", "\x00\xff garbage").definitions == ()


def test_the_index_reads_them_and_a_typed_receiver_gets_its_class(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "store.ts").write_text(TS)
    (root / "store.go").write_text(GO)
    (root / "lib.rs").write_text(RUST)
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    stats = index.refresh()
    assert stats.files == 3 and stats.definitions > 12
    text = 'import { Store } from "./store";\n\nfunction use(s: Store) {\n  return s.'
    [chunk] = dependencies(index, "src/app.ts", text, len(text), 1024)
    assert chunk.path == "src/store.ts"
    assert chunk.text.startswith("// Keeps items by key.\nclass Store extends B {")
    assert "    get(key: string): Item | undefined;" in chunk.text


def test_script_and_rust_imports_resolve_to_the_files_they_name(tmp_path: Path) -> None:
    """`./store` is src/store.ts, not the other file defining a Store; an imported
    function, a default export and a namespace import come from the files named; a Rust
    `use crate::...` / `super::...` is the module's file."""
    root = tmp_path / "repo"
    for folder in ("src/lib", "legacy", "crate/src/store"):
        (root / folder).mkdir(parents=True)
    (root / "src" / "store.ts").write_text(
        "export class Store {\n  fetchEverything(key: string): Item { }\n}\n"
        "export function openStore(path: string): Store { }\n"
    )
    (root / "legacy" / "store.ts").write_text("export class Store {\n  oldFetch(): void { }\n}\n")
    (root / "src" / "lib" / "index.ts").write_text(
        "export function slugify(t: string): string {}\n"
    )
    (root / "src" / "widget.ts").write_text(
        "export default class Widget {\n  paint(): void {}\n}\n"
    )
    (root / "crate" / "src" / "store" / "mod.rs").write_text(
        "pub struct Shelf { pub size: usize }\nimpl Shelf {\n    pub fn stack_up(&self) {}\n}\n"
    )
    (root / "crate" / "src" / "store" / "item.rs").write_text("pub fn weigh_item(n: u8) -> u8 {}\n")
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    index.refresh()

    def block(path: str, text: str) -> str:
        chunks = dependencies(index, path, text, len(text), 1024)
        return "".join(f"<{c.path}>\n{c.text}" for c in chunks)

    ts = (
        'import { Store, openStore } from "./store.js";\nimport Widget from "./widget";\n'
        'import * as lib from "./lib";\n\nfunction show(s: Store) {\n'
        "  const w = new Widget();\n  openStore(lib.slugify(w.paint()));\n  return s."
    )
    got = block("src/app.ts", ts)
    assert "fetchEverything(key: string)" in got and "oldFetch" not in got
    assert "openStore(path: string)" in got
    assert "paint()" in got and "slugify(t: string)" in got
    rust = (
        "use crate::store::Shelf;\nuse super::item::weigh_item;\n\nfn f() {\n    weigh_item(1);\n"
    )
    got = block("crate/src/store/view.rs", rust)  # the module store::view
    assert "stack_up" in got and "weigh_item(n: u8)" in got
