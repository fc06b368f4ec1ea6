"""Helix cannot be installed here: check that the shipped snippets parse, keep Helix's
usual servers, and name commands and features the server really has."""

from __future__ import annotations

import tomllib
from pathlib import Path

from aiguilleur.lsp.action_commands import ACTION_COMMAND
from aiguilleur.lsp.chat_commands import CHAT_COMMAND, NEW_CHAT_COMMAND
from aiguilleur.lsp.server import USAGE_COMMAND

HELIX = Path(__file__).resolve().parents[2] / "editors" / "helix"
# Helix's own defaults (helix-editor/helix languages.toml) for the languages we list.
DEFAULTS = {
    "python": ["ruff", "jedi", "pylsp"],
    "rust": ["rust-analyzer"],
    "go": ["gopls", "golangci-lint-lsp"],
    "typescript": ["typescript-language-server"],
    "javascript": ["typescript-language-server"],
    "markdown": ["marksman"],
}


def test_languages_snippet_adds_aiguilleur_and_keeps_the_usual_servers() -> None:
    data = tomllib.loads((HELIX / "languages.toml").read_text())
    server = data["language-server"]["aiguilleur"]
    assert [server["command"], *server["args"]] == ["aiguilleur", "serve"]
    languages = {lang["name"]: lang["language-servers"] for lang in data["language"]}
    assert set(languages) == set(DEFAULTS)
    for name, servers in languages.items():
        assert servers == [*DEFAULTS[name], "aiguilleur"], name


def test_key_bindings_name_real_commands() -> None:
    data = tomllib.loads((HELIX / "config.toml").read_text())
    bindings = data["keys"]["normal"]["space"]["i"]
    assert bindings["a"] == "code_action"
    commands = {v.split()[-1] for v in bindings.values() if v.startswith(":lsp-workspace-command")}
    assert commands == {NEW_CHAT_COMMAND, USAGE_COMMAND}
    assert CHAT_COMMAND and ACTION_COMMAND  # reached through code actions


def test_the_readme_stays_short() -> None:
    text = (HELIX / "README.md").read_text()
    assert len([line for line in text.splitlines() if line.strip()]) <= 10
