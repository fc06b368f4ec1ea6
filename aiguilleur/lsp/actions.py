"""Code actions: fix a diagnostic, rewrite as instructed, document, write tests.

Listing is instant (no model call). The model is asked when the user picks an action:
through `codeAction/resolve` for clients that resolve edits, else through the
`aiguilleur.action` command, which sends the edit with `workspace/applyEdit`. An edit is
computed for one document version and refused if the document changed meanwhile, or
if the answer is incomplete (it ran out of tokens, or its stream broke off: the route
then falls back to the next one).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec
from lsprotocol import types as lsp

from aiguilleur.errors import IncompleteAnswer
from aiguilleur.lsp.positions import chars_to_units
from aiguilleur.lsp.sanitize import for_editor
from aiguilleur.lsp.uris import path_of
from aiguilleur.settings import Config
from aiguilleur.testfiles import TestTarget, test_target
from aiguilleur.types import ActionRequest, Answer

ACTION_COMMAND = "aiguilleur.action"

_COMMENT = re.compile(r"^\s*(?:#|//|--|;|/\*+|\*)\s?(?P<text>.*?)(?:\s*\*/)?\s*$")
_FENCE = re.compile(r"```[^\n]*\n(?P<code>.*?)(?:```|\Z)", re.S)


class ActionData(msgspec.Struct, frozen=True):
    """What an action needs later, carried by the client between listing and running."""

    action: str
    uri: str
    version: int | None
    start_line: int
    end_line: int  # inclusive
    instruction: str = ""
    diagnostics: list[str] = msgspec.field(default_factory=list)


class StaleEdit(Exception):
    """The document changed after the action was listed."""


def _lines(start: lsp.Position, end: lsp.Position) -> tuple[int, int]:
    last = end.line - 1 if end.character == 0 and end.line > start.line else end.line
    return start.line, max(start.line, last)


def instruction_above(lines: list[str], start_line: int) -> str:
    """The comment line right above the selection, as the rewrite instruction."""
    if start_line == 0 or start_line > len(lines):
        return ""
    m = _COMMENT.match(lines[start_line - 1])
    return m["text"].strip() if m else ""


def code_only(answer: str) -> str:
    fenced = _FENCE.search(answer)
    return (fenced["code"] if fenced else answer).strip("\n")


def reindent(code: str, like: str) -> str:
    """Shift `code` so its least indented line matches the least indented of `like`."""

    def indent(text: str) -> int:
        widths = [len(line) - len(line.lstrip()) for line in text.split("\n") if line.strip()]
        return min(widths, default=0)

    want, have = indent(like), indent(code)
    pad = next((line[:want] for line in like.split("\n") if line.strip()), " " * want)
    out = []
    for line in code.split("\n"):
        if not line.strip():
            out.append("")
        elif want >= have:
            out.append(pad[: want - have] + line)
        else:
            out.append(line[have - want :])
    return "\n".join(out)


def _is_test_file(path: str) -> bool:
    name = Path(path).name
    return name.startswith("test_") or ".test." in name or name.endswith("_test.go")


class ActionRoutes(Protocol):
    """Where a session's code actions go (runtime.SessionRoutes), under its policy."""

    @property
    def policy(self) -> Config: ...

    async def code_action(self, request: ActionRequest) -> Answer: ...


class ActionsEditor(Protocol):
    """What actions need of the editor connection (the Session)."""

    @property
    def workspace_root(self) -> Path | None: ...

    def encoding(self) -> str: ...


class ActionsFeature:
    def __init__(self, routes: ActionRoutes, editor: ActionsEditor) -> None:
        self._routes = routes
        self._editor = editor

    def list(
        self,
        uri: str,
        text: str,
        version: int | None,
        params: lsp.CodeActionParams,
        resolvable: bool,
    ) -> list[lsp.CodeAction]:
        lines = text.split("\n")
        start, end = _lines(params.range.start, params.range.end)
        if start >= len(lines):
            return []
        end = min(end, len(lines) - 1)
        found: list[tuple[str, lsp.CodeActionKind, ActionData]] = []
        for d in params.context.diagnostics:
            if d.range.start.line <= end and d.range.end.line >= start:
                data = ActionData("fix", uri, version, start, end, diagnostics=[d.message])
                found.append((f"Fix: {d.message[:60]}", lsp.CodeActionKind.QuickFix, data))
        if any(line.strip() for line in lines[start : end + 1]):
            instruction = instruction_above(lines, start)
            if instruction:
                data = ActionData("rewrite", uri, version, start, end, instruction=instruction)
                title = f"Rewrite: {instruction[:60]}"
                found.append((title, lsp.CodeActionKind.RefactorRewrite, data))
            data = ActionData("document", uri, version, start, end)
            found.append(("Document this code", lsp.CodeActionKind.RefactorRewrite, data))
            if not _is_test_file(path_of(uri)):
                data = ActionData("tests", uri, version, start, end)
                # `refactor`, not `source`: VS Code keeps source actions out of the light
                # bulb, where a user looks for this one.
                found.append(("Write tests", lsp.CodeActionKind.Refactor, data))
        actions = []
        for title, kind, data in found:
            plain = msgspec.to_builtins(data)
            action = lsp.CodeAction(title=f"aiguilleur: {title}", kind=kind, data=plain)
            if not resolvable:
                action.command = lsp.Command(action.title, ACTION_COMMAND, arguments=[plain])
            actions.append(action)
        return actions

    async def edit(
        self, data: ActionData, text: str, current_version: Callable[[], int | None]
    ) -> tuple[lsp.WorkspaceEdit, Answer]:
        """The edit for `data`, computed against `text` (the version it was listed for)."""
        if current_version() != data.version:
            raise StaleEdit("the document changed since this action was offered; run it again")
        lines = text.split("\n")
        if data.end_line >= len(lines):
            raise StaleEdit("the selection is no longer in the document; run it again")
        n = self._routes.policy.actions.context_lines
        code = "\n".join(lines[data.start_line : data.end_line + 1])
        target = (
            test_target(path_of(data.uri), self._editor.workspace_root)
            if data.action == "tests"
            else None
        )
        request = ActionRequest(
            action=data.action,
            path=path_of(data.uri),
            code=code,
            before="\n".join(lines[max(0, data.start_line - n) : data.start_line]),
            after="\n".join(lines[data.end_line + 1 : data.end_line + 1 + n]),
            instruction=data.instruction,
            diagnostics=tuple(data.diagnostics),
            test_path=target.path if target else "",
            module=target.module if target else "",
            framework=target.framework if target else "",
        )
        answer = await self._routes.code_action(request)
        if current_version() != data.version:
            raise StaleEdit("the document changed while the answer was computed; run it again")
        if answer.finish_reason == "length":
            limit = self._routes.policy.actions.max_tokens
            raise IncompleteAnswer(
                f"the answer from {answer.model} used all its tokens before it ended, so the "
                f"edit would be incomplete; nothing was changed. Raise `[actions] max_tokens` "
                f"(now {limit}) or select less code"
            )
        produced = code_only(for_editor(answer.text))
        if target is not None:
            return self._test_file_edit(target, produced), answer
        new_code = reindent(produced, code)
        last = data.end_line + 1
        if last < len(lines):
            end, new_text = lsp.Position(last, 0), new_code + "\n"
        else:
            units = chars_to_units(lines[-1], self._editor.encoding())
            end, new_text = lsp.Position(data.end_line, units), new_code
        change = lsp.TextEdit(lsp.Range(lsp.Position(data.start_line, 0), end), new_text)
        # Both forms: `documentChanges` makes a client check the version too.
        edit = lsp.WorkspaceEdit(
            changes={data.uri: [change]},
            document_changes=[
                lsp.TextDocumentEdit(
                    lsp.OptionalVersionedTextDocumentIdentifier(data.uri, data.version), [change]
                )
            ],
        )
        return edit, answer

    def _test_file_edit(self, target: TestTarget, content: str) -> lsp.WorkspaceEdit:
        """Create the test file, or append to it when it exists."""
        path = Path(target.path)
        uri = path.as_uri()
        doc = lsp.OptionalVersionedTextDocumentIdentifier(uri, None)
        if path.exists():
            existing = path.read_text(encoding="utf-8", errors="replace")
            last = existing.split("\n")
            end = lsp.Position(len(last) - 1, chars_to_units(last[-1], self._editor.encoding()))
            sep = "" if existing.endswith("\n\n") else "\n" if existing.endswith("\n") else "\n\n"
            insert = lsp.TextEdit(lsp.Range(end, end), f"{sep}\n{content}\n")
            return lsp.WorkspaceEdit(
                changes={uri: [insert]}, document_changes=[lsp.TextDocumentEdit(doc, [insert])]
            )
        start = lsp.Position(0, 0)
        write = lsp.TextEdit(lsp.Range(start, start), content + "\n")
        return lsp.WorkspaceEdit(
            document_changes=[lsp.CreateFile(uri=uri), lsp.TextDocumentEdit(doc, [write])]
        )
