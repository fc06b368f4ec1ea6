"""What the cursor's own file says, read from its text without parsing it (it changes at
every keystroke and is often half-written): its imports, the function and class the
cursor is in, the receivers used there (`ctx.`, `self._reader.`, `types.`,
`get_backend().`), and what the file says a name is (`ctx: "Context"`,
`reader = Reader(...)`). Each is a scan of lines or a regular expression: microseconds to
a millisecond on files of thousands of lines.
"""

from __future__ import annotations

import re

import msgspec

_FROM_IMPORT = re.compile(r"^\s*from\s+(\.*[\w.]*)\s+import\s+(.+)$")
_IMPORT = re.compile(r"^\s*import\s+(.+)$")
_IMPORT_LINES = re.compile(r"(?m)^[ \t]*(?:from|import)[ \t].*$")
_HEADER = re.compile(r"^([ \t]*)(?:async[ \t]+)?(def|class)[ \t]+([A-Za-z_]\w*)")
# A receiver: a dotted name, or a call of one, right before a `.`.
_RECEIVER = re.compile(r"((?:[A-Za-z_]\w*\s*\.\s*)*[A-Za-z_]\w*)(\s*\([^()\n]*\))?\s*\.\s*\w*$")
_RECEIVER_ANYWHERE = re.compile(r"((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)(\([^()\n]*\))?\.(?=[A-Za-z_])")
_CAPITALISED = re.compile(r"\b([A-Z]\w*)")
# What a line says a name holds: `name: Annotation`, `name = Class(`, `name = other`.
# Generic (the name a group) rather than one pattern per name: compiling one costs
# more than running it on the few lines that hold the name.
_SAID = re.compile(
    r"(?<![\w])([A-Za-z_]\w*)\s*(?::\s*([^=,)\n]+?)\s*(?:[=,)\n]|$)"
    r"|=\s*([A-Z]\w*)\s*\(|=\s*([a-z_]\w*)\s*$)",
    re.MULTILINE,
)
# `name = make(...)`, `name: T = await mod.fetch(...)`.
_SET_FROM_CALL = re.compile(
    r"(?<![\w.])([A-Za-z_]\w*)\s*(?::[^=\n]*)?=\s*(?:await\s+)?((?:[A-Za-z_]\w*\.)*[a-z_]\w*)\s*\("
)
# `with make(...) as name`.
_ENTERED = re.compile(
    r"(?<![\w.])((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\s*\([^()\n]*(?:\([^()\n]*\)[^()\n]*)*\)"
    r"\s+as\s+([A-Za-z_]\w*)\b"
)
# Words of annotations that name no class of the user's.
TYPING_WORDS = frozenset(
    {
        *("Optional", "Union", "List", "Dict", "Set", "Tuple", "Type", "Callable", "Any"),
        *("Iterable", "Iterator", "Sequence", "Mapping", "Awaitable", "Coroutine", "Literal"),
        *("None", "True", "False", "ClassVar", "Final", "Annotated", "Generator", "TypeVar"),
    }
)


class Imported(msgspec.Struct, frozen=True):
    """A name the cursor's file binds by importing it from `module` (`name` there; "" for
    a module)."""

    alias: str
    module: str
    name: str


class Scope(msgspec.Struct, frozen=True):
    """The function (or class body, or module level) the cursor is in: `key` names it
    (its header line and its class's), so that a block built for it can be kept while the
    cursor stays there; `start`/`end` are offsets of its lines in the text."""

    key: str
    start: int
    end: int
    class_header: str = ""  # "class Reader(Base):" when the function is a method


class Receiver(msgspec.Struct, frozen=True):
    """What a `.` follows: `names` of the dotted chain (["self", "_reader"]), and whether
    the chain's last name is called (`get_backend().`)."""

    names: tuple[str, ...]
    called: bool = False


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


def imports_key(text: str) -> str:
    """The file's import lines, joined: changes exactly when an import does."""
    return "\n".join(m.group(0).strip() for m in _IMPORT_LINES.finditer(text))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def scope_at(text: str, offset: int) -> Scope:
    """The function (else class, else module) whose body holds `offset`: found by
    indentation, going up from the cursor's line to a `def`/`class` less indented than
    the code there, and down to the first line as little indented as that header."""
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    row = text.count("\n", 0, offset)
    # The indentation of the code at the cursor: its line's; with nothing but blanks
    # before the cursor on its line, that of the code above it (deeper after a `:`),
    # whatever indentation is typed so far: the scope changes when code is typed at
    # another depth, not at each space or newline on the way (the block would be
    # rebuilt twice for nothing).
    level = _indent(lines[row])
    if not lines[row][: offset - starts[row]].strip():
        above = next((lines[r] for r in range(row - 1, -1, -1) if lines[r].strip()), "")
        level = _indent(above) + (1 if above.rstrip().endswith(":") else 0)
    header_row = class_row = None
    for r in range(row - 1, -1, -1):
        m = _HEADER.match(lines[r])
        if m is None or len(m.group(1)) >= level:
            continue
        if header_row is None:
            header_row = r
        if m.group(2) == "class":
            class_row = r
            break
        level = len(m.group(1))  # a method's class is less indented than its def
    if header_row is None:
        return Scope("", 0, len(text))
    header = lines[header_row]
    end = len(text)
    for r in range(max(row, header_row) + 1, len(lines)):
        if lines[r].strip() and _indent(lines[r]) <= _indent(header):
            end = starts[r]
            break
    class_header = lines[class_row].strip() if class_row is not None else ""
    key = class_header if header_row == class_row else f"{class_header}\n{header.strip()}"
    return Scope(key, starts[header_row], end, class_header)


def receiver_at(text: str, offset: int) -> Receiver | None:
    """The receiver right before the cursor (`ctx.` or `ctx.na|`), if any."""
    m = _RECEIVER.search(text[max(0, offset - 200) : offset])
    if m is None:
        return None
    return Receiver(tuple(n.strip() for n in m.group(1).split(".")), bool(m.group(2)))


def receivers_in(text: str, start: int, end: int, offset: int) -> list[Receiver]:
    """The receivers used in text[start:end], the closest to `offset` first (each once)."""
    found: dict[Receiver, int] = {}
    for m in _RECEIVER_ANYWHERE.finditer(text, start, end):
        r = Receiver(tuple(m.group(1).split(".")), bool(m.group(2)))
        d = abs(m.start() - offset)
        if d < found.get(r, len(text) + 1):
            found[r] = d
    return sorted(found, key=lambda r: found[r])


def said_classes(text: str, name: str, hops: int = 1) -> list[str]:
    """The class names this file says `name` holds: its annotations (`name: "Context"`,
    `name: t.Optional[Reader] = None`, `self.name: Reader`), what it is built from
    (`name = Reader(...)`) and, `hops` times, what a name it is set from holds
    (`self._lsp = lsp` with `lsp: Protocol`), in the order they appear."""
    out: list[str] = []
    for m in _SAID.finditer(lines_with(text, name)):
        if m.group(1) != name:
            continue
        annotation, built, other = m.group(2), m.group(3), m.group(4)
        found = _CAPITALISED.findall(annotation or "") + ([built] if built else [])
        if other and other != name and hops > 0:
            found += said_classes(text, other, hops - 1)
        for c in found:
            if c not in TYPING_WORDS and c not in out:
                out.append(c)
    for dotted in _entered(text, name):  # `with Lock() as name`
        if dotted[-1][:1].isupper() and dotted[-1] not in out:
            out.append(dotted[-1])
    return out


def _entered(text: str, name: str) -> list[tuple[str, ...]]:
    """What `with <call> as name` enters (`async with create_task_group() as tg`), as
    dotted names, in order: what the call gives is what `name` holds (its `__enter__`
    most often returns itself)."""
    out: list[tuple[str, ...]] = []
    for m in _ENTERED.finditer(lines_with(text, f" as {name}")):
        if m.group(2) != name:
            continue
        dotted = tuple(m.group(1).split("."))
        if dotted not in out:
            out.append(dotted)
    return out


def lines_with(text: str, needle: str) -> str:
    """The lines of `text` holding `needle`, in order: a regular expression about a name
    runs on these alone, not on a file of thousands of lines (one per name, per build)."""
    out: list[str] = []
    at = text.find(needle)
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        out.append(text[start:end])
        at = text.find(needle, end)
    return "\n".join(out)


def said_calls(text: str, name: str) -> list[tuple[str, ...]]:
    """The functions this file sets `name` from (`api = get_api(token)`,
    `x = self.make()`, `y = await mod.fetch()`, `with open_session() as s`), as dotted
    names, in order: what they
    return is what `name` holds. Constructions (a capitalised call) are said_classes'."""
    out: list[tuple[str, ...]] = []
    for m in _SET_FROM_CALL.finditer(lines_with(text, name)):
        if m.group(1) != name:
            continue
        dotted = tuple(m.group(2).split("."))
        if dotted not in out:
            out.append(dotted)
    for dotted in _entered(text, name):  # `with open_session() as name`
        if not dotted[-1][:1].isupper() and dotted not in out:
            out.append(dotted)
    return out


def class_bases(header: str) -> list[str]:
    """The bases a class header names (`class A(b.Base, Mixin, metaclass=M):` ->
    ["b.Base", "Mixin"])."""
    m = re.match(r"\s*class\s+\w+\s*\((.*)\)\s*:?", header)
    if m is None:
        return []
    return [
        b.strip().split("[")[0]
        for b in m.group(1).split(",")
        if b.strip() and "=" not in b and re.fullmatch(r"[\w.\[\], ]+", b.strip())
    ]


def returned_classes(signature: str) -> list[str]:
    """The class names a function's return annotation holds (`-> type[Backend]`)."""
    _, arrow, returned = signature.rpartition("->")
    if not arrow:
        return []
    return [c for c in _CAPITALISED.findall(returned) if c not in TYPING_WORDS]
