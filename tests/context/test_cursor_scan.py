"""What the cursor's file says, read from its text as the user types it."""

from __future__ import annotations

from aiguilleur.context.cursor_scan import (
    Receiver,
    class_bases,
    imports_key,
    receiver_at,
    receivers_in,
    returned_classes,
    said_calls,
    said_classes,
    scope_at,
)

SOURCE = """import os
from app import db


class Reader(db.Base):
    size = 1

    def read(self, ctx: "Context") -> bytes:
        data = self._stream.fetch()
        def inner():
            pass
        return ctx.

    def close(self):
        pass


top = load().
"""


def test_the_scope_is_the_function_around_the_cursor_with_its_class() -> None:
    at = SOURCE.index("ctx.") + 4
    scope = scope_at(SOURCE, at)
    assert scope.class_header == "class Reader(db.Base):"
    assert scope.key == 'class Reader(db.Base):\ndef read(self, ctx: "Context") -> bytes:'
    body = SOURCE[scope.start : scope.end]
    assert body.startswith("    def read(") and "return ctx." in body and "def close" not in body
    # Another line of the same function: the same scope; the next method: another.
    assert scope_at(SOURCE, SOURCE.index("data =")).key == scope.key
    assert scope_at(SOURCE, SOURCE.index("pass", SOURCE.index("close"))).key.endswith(
        "def close(self):"
    )
    assert scope_at(SOURCE, SOURCE.index("size")).key == "class Reader(db.Base):"
    assert scope_at(SOURCE, SOURCE.index("top") + 3).key == ""
    # A fresh line belongs to the code above it, whatever indentation is typed so far.
    for typed in ("", "  ", "        "):
        fresh = SOURCE.replace("        return ctx.\n", f"        return ctx.\n{typed}")
        assert scope_at(fresh, fresh.index("return ctx.") + 12 + len(typed)).key == scope.key


def test_receivers_before_the_cursor_and_in_the_function() -> None:
    at = SOURCE.index("ctx.") + 4
    assert receiver_at(SOURCE, at) == Receiver(("ctx",))
    assert receiver_at(SOURCE, len(SOURCE) - 1) == Receiver(("load",), called=True)
    assert receiver_at(SOURCE, SOURCE.index("data")) is None
    scope = scope_at(SOURCE, at)
    assert receivers_in(SOURCE, scope.start, scope.end, at) == [Receiver(("self", "_stream"))]


def test_what_the_file_says_a_name_holds() -> None:
    assert said_classes(SOURCE, "ctx") == ["Context"]
    text = "def f(r: t.Optional[Reader] = None, w: Writer):\n    x = Buffer(3)\n    y = x\n"
    assert said_classes(text, "r") == ["Reader"] and said_classes(text, "w") == ["Writer"]
    assert said_classes(text, "y") == ["Buffer"]  # one hop: set from x
    assert class_bases("class A(b.Base, Mixin[int], metaclass=M):") == ["b.Base", "Mixin"]
    assert returned_classes("def f() -> type[AsyncBackend]") == ["AsyncBackend"]
    assert returned_classes("def f(x: Reader)") == []
    assert imports_key(SOURCE) == "import os\nfrom app import db"
    calls = "api = get_api(token)\nx = await self.make()\ny = Thing()\nz: Api = mod.sub.build(1)\n"
    assert said_calls(calls, "api") == [("get_api",)]
    assert said_calls(calls, "x") == [("self", "make")]
    assert said_calls(calls, "y") == []  # a construction: said_classes says it
    assert said_calls(calls, "z") == [("mod", "sub", "build")]
