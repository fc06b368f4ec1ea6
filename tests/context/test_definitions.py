"""What the index keeps of a Python file: signatures and first docstring lines, never
bodies; the names its imports bind."""

from __future__ import annotations

from aiguilleur.context.definitions import DefinitionKind, Import, python_symbols

SOURCE = '''"""A module."""
import os.path
import numpy as np
from .session import Session as S, Layers
from ..pkg import tools

RETRIES: int = 3
_cache = {}


def read(path: str, n: int = -1) -> bytes:
    """Read a file.

    More text."""
    secret_body = 1
    return b""


async def fetch(url, *, timeout=5.0):
    pass


class Window(Base, metaclass=Meta):
    """One editor window."""

    kind = "window"
    size: int = 0

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.version: int = 0

    async def show(self, text: str) -> bool:
        """Show text."""
        self.shown = text
        return True
'''


def test_functions_classes_methods_and_attributes_with_their_signatures() -> None:
    symbols = python_symbols(SOURCE)
    got = {(d.scope, d.name): d for d in symbols.definitions}
    assert got[("", "read")].signature == "def read(path: str, n: int=-1) -> bytes"
    assert got[("", "read")].doc == "Read a file."
    assert got[("", "read")].line == 10
    assert got[("", "fetch")].signature == "async def fetch(url, *, timeout=5.0)"
    assert got[("", "Window")].signature == "class Window(Base, metaclass=Meta)"
    assert got[("", "Window")].kind is DefinitionKind.CLASS
    show = got[("Window", "show")]
    assert show.kind is DefinitionKind.METHOD and show.doc == "Show text."
    assert show.signature == "async def show(self, text: str) -> bool"
    # Class attributes, and those its methods set on self, each once.
    attributes = {n for (scope, n), d in got.items() if d.kind is DefinitionKind.ATTRIBUTE}
    assert attributes == {"kind", "size", "uri", "version", "shown"}
    assert got[("Window", "version")].signature == "self.version: int = 0"
    assert got[("", "RETRIES")].signature == "RETRIES: int = 3"
    # Never a body.
    assert all("secret_body" not in d.signature for d in symbols.definitions)


def test_imports_and_the_names_they_bind() -> None:
    assert python_symbols(SOURCE).imports == (
        Import("os.path", "", "os"),
        Import("numpy", "", "np"),
        Import(".session", "Session", "S"),
        Import(".session", "Layers", "Layers"),
        Import("..pkg", "tools", "tools"),
    )


def test_a_file_that_does_not_parse_says_why_and_defines_nothing() -> None:
    broken = python_symbols("def f(:\n    pass\n")
    assert broken.definitions == () and broken.error.startswith("SyntaxError")
    assert python_symbols("x = 1\0").error.startswith(("SyntaxError", "ValueError"))


def test_a_huge_default_value_is_cut() -> None:
    [table] = python_symbols("TABLE = " + repr(list(range(5000))) + "\n").definitions
    assert len(table.signature) <= 300 and table.signature.endswith("…")


def test_definitions_inside_module_level_if_and_try_blocks_count() -> None:
    """`if TYPE_CHECKING:` and `try: ... except ImportError:` are where many modules
    define their protocols and fallbacks."""
    symbols = python_symbols(
        "import typing\n"
        "if typing.TYPE_CHECKING:\n"
        "    class Connection(typing.Protocol):\n"
        "        def getresponse(self) -> bytes: ...\n"
        "try:\n"
        "    import ssl\n"
        "except ImportError:\n"
        "    def wrap(sock): ...\n"
        "else:\n"
        "    HAS_SSL = True\n"
    )
    found = {(d.name, d.kind, d.scope) for d in symbols.definitions}
    assert ("Connection", DefinitionKind.CLASS, "") in found
    assert ("getresponse", DefinitionKind.METHOD, "Connection") in found
    assert ("wrap", DefinitionKind.FUNCTION, "") in found
    assert ("HAS_SSL", DefinitionKind.VARIABLE, "") in found
