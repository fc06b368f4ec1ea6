"""The prompts of the code actions and of chat, and the user's overrides of them."""

from __future__ import annotations

from aiguilleur.features.prompts import render


def test_a_users_prompt_overrides_the_builtin_one() -> None:
    default = render("document", {}, path="m.py", code="x = 1", language="Python")
    custom = render(
        "document", {"document": (None, "Doc {path} {nothing}:\n{code}")}, path="m.py", code="x"
    )
    assert "docstring" in default[0].content and default[0].content == custom[0].content
    assert custom[1].content == "Doc m.py :\nx"  # an unknown placeholder becomes empty
