"""The prompts of the code actions and of chat, in one place.

Each action has a system prompt and a user template; templates see `{language}`,
`{path}`, `{code}` (the selection), `{before}` and `{after}` (a few lines around it),
`{repository}` (the definitions of other files the code uses, with their own heading, or
nothing), `{instruction}` (rewrite) and `{diagnostics}` (fix). A user overrides any of them in
`[prompts.<action>]` of the config (`system = "..."`, `user = "..."`).
"""

from __future__ import annotations

import string

import msgspec

from aiguilleur.types import ChatMessage

CODE_ONLY = (
    "Reply with the code only: no explanation, no markdown fences, no text before or "
    "after it. Keep the indentation of the code you were given."
)


class Prompt(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    system: str
    user: str


PROMPTS: dict[str, Prompt] = {
    "explain": Prompt(
        system=(
            "You explain code to a programmer who is reading it in their editor. Be precise "
            "and brief; use markdown; quote identifiers in backticks."
        ),
        user=(
            "{repository}Explain this {language} code from {path}:\n\n```\n{code}\n```\n\n"
            "Context before it:\n```\n{before}\n```\nContext after it:\n```\n{after}\n```"
        ),
    ),
    "fix": Prompt(
        system="You fix code so that the reported problems go away. " + CODE_ONLY,
        user=(
            "{repository}File {path} ({language}). Problems reported in the code below:\n"
            "{diagnostics}\n\nCode to fix (replace it entirely):\n{code}\n\n"
            "For context, the code just before it:\n{before}\n\nand just after it:\n{after}"
        ),
    ),
    "rewrite": Prompt(
        system="You rewrite code as instructed, changing nothing else. " + CODE_ONLY,
        user=(
            "{repository}File {path} ({language}). Instruction: {instruction}\n\n"
            "Code to rewrite (replace it entirely):\n{code}\n\n"
            "For context, the code just before it:\n{before}\n\nand just after it:\n{after}"
        ),
    ),
    "document": Prompt(
        system=(
            "You add documentation in the language's own convention (a docstring in Python, "
            "a doc comment elsewhere) and change nothing else. " + CODE_ONLY
        ),
        user=(
            "{repository}File {path} ({language}). Return this code with its documentation "
            "added:\n{code}"
        ),
    ),
    "tests": Prompt(
        system=(
            "You write unit tests in the project's test framework ({framework}). Reply with "
            "the content of a test file only: no explanation, no markdown fences."
        ),
        user=(
            "{repository}Write tests for this {language} code from {path}; the tests go in "
            "{test_path} and import it as {module}:\n{code}"
        ),
    ),
}


class _Default(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render(
    action: str, overrides: dict[str, tuple[str | None, str | None]], **values: str
) -> list[ChatMessage]:
    """The messages for `action`; unknown placeholders in a user's template become empty."""
    system, user = overrides.get(action, (None, None))
    base = PROMPTS[action]
    prompt = Prompt(system or base.system, user or base.user)
    fields = _Default(values)
    formatter = string.Formatter()
    return [
        ChatMessage("system", formatter.vformat(prompt.system, (), fields)),
        ChatMessage("user", formatter.vformat(prompt.user, (), fields)),
    ]
