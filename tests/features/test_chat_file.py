"""A new chat document: what it holds and where the user's cursor goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiguilleur.features.chat import ChatError, parse, write_new_chat

SOURCE = "import os\n\ndef add(a, b):\n    return a + b\n"


def test_a_chat_about_lines_quotes_them_and_puts_the_cursor_after_the_question(
    tmp_path: Path,
) -> None:
    question = "Pourquoi ça marche ? 😋\nAnd a second line."
    chat = write_new_chat(tmp_path, "file:///w/m.py", SOURCE, 2, 3, question)
    assert chat.path.parent == tmp_path and chat.path.read_text(encoding="utf-8") == chat.text
    # The cursor ends the question's first line, counted in characters: the emoji is one.
    assert chat.text[: chat.cursor].endswith("## You\n\nPourquoi ça marche ? 😋")
    turns = parse(chat.text)
    assert turns.about == "/w/m.py"
    assert turns.messages[-1].role == "user"
    assert "def add(a, b):\n    return a + b\n```" in turns.messages[-1].content
    assert "import os" not in turns.messages[-1].content


def test_a_chat_without_a_question_or_lines_is_about_the_whole_file(tmp_path: Path) -> None:
    chat = write_new_chat(tmp_path, "file:///w/m.py", SOURCE, 0, -1, "")
    assert chat.text[chat.cursor - len("## You\n\n") : chat.cursor] == "## You\n\n"
    assert "import os" in chat.text and "return a + b" in chat.text


def test_a_chat_dir_that_cannot_be_written_is_said_not_raised_as_os_error(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ChatError, match="cannot write"):
        write_new_chat(blocker / "chats", "file:///w/m.py", SOURCE, 0, 1, "why?")
