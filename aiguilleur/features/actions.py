"""Code actions: fix a diagnostic, rewrite as instructed, document, write tests.

Listing is instant (no model call). The model is asked when the user picks an action:
through `codeAction/resolve` for clients that resolve edits, else through the
`aiguilleur.action` command, which sends the edit with `workspace/applyEdit` (lsp/
wires both; here actions are lines and str offsets). An edit is computed for one
document version and refused if the document changed meanwhile, or
if the answer is incomplete (it ran out of tokens, or its stream broke off: the route
then falls back to the next one).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from aiguilleur.config.settings import ActionsConfig
from aiguilleur.errors import IncompleteAnswer
from aiguilleur.features.needs import FeatureNeeds
from aiguilleur.features.prompts import render
from aiguilleur.features.sources import sources_for
from aiguilleur.features.testfiles import TestTarget, test_target
from aiguilleur.features.uris import path_of
from aiguilleur.languages import language_of
from aiguilleur.sanitize import for_editor, has_bidi
from aiguilleur.types import Answer, ChatMessage, RequestKind

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


class ActionKind(enum.Enum):
    """Where an editor files the action (LSP's code action kinds)."""

    FIX = "quickfix"
    REWRITE = "refactor.rewrite"
    # `refactor`, not `source`: VS Code keeps source actions out of the light bulb,
    # where a user looks for "Write tests".
    REFACTOR = "refactor"


class Offer(msgspec.Struct, frozen=True):
    """An action the user may pick, before any model is asked."""

    title: str
    kind: ActionKind
    data: ActionData


class Problem(msgspec.Struct, frozen=True):
    """A diagnostic the editor shows, on lines `start_line`..`end_line` (inclusive)."""

    message: str
    start_line: int
    end_line: int


class DocumentEdit(msgspec.Struct, frozen=True):
    """Replace `base[start:end]` with `new_text` in the document `uri` (a file to create
    first when `create`): `base` is the text the offsets count in, and the edit applies
    to `version` of the document only."""

    uri: str
    version: int | None
    base: str
    start: int
    end: int
    new_text: str
    create: bool = False


class StaleEdit(Exception):
    """The document changed after the action was listed."""


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


class ActionRequest(msgspec.Struct, frozen=True):
    """A code action to compute: the code it applies to and what the prompt needs."""

    action: str  # explain, fix, rewrite, document, tests
    path: str
    code: str
    before: str = ""
    after: str = ""
    repository: str = ""  # the definitions of other files the code uses (sources.py)
    instruction: str = ""
    diagnostics: tuple[str, ...] = ()
    test_path: str = ""  # tests: where they will go, how they import the code, with what
    module: str = ""
    framework: str = ""


class ActionsFeature:
    def __init__(self, needs: FeatureNeeds) -> None:
        self._routes = needs.routes
        self._settings = needs.settings
        self._editor = needs.editor

    @property
    def settings(self) -> ActionsConfig:
        """This feature's section of the session's settings, as they are now."""
        return self._settings.policy.actions

    def messages(self, request: ActionRequest) -> list[ChatMessage]:
        """The prompt of `request`: the built-in one, or the user's ([prompts.<action>])."""
        overrides = self._settings.policy.prompts
        return render(
            request.action,
            {k: (v.system, v.user) for k, v in overrides.items()},
            language=language_of(request.path) or "code",
            path=request.path,
            code=request.code,
            before=request.before,
            after=request.after,
            repository=request.repository,
            instruction=request.instruction,
            diagnostics="\n".join(f"- {m}" for m in request.diagnostics),
            test_path=request.test_path,
            module=request.module,
            framework=request.framework,
        )

    def list(
        self,
        uri: str,
        text: str,
        version: int | None,
        start_line: int,
        end_line: int,
        problems: Sequence[Problem],
    ) -> list[Offer]:
        """The actions on lines `start_line`..`end_line` (inclusive) of `text`."""
        lines = text.split("\n")
        start, end = start_line, end_line
        if start >= len(lines):
            return []
        end = min(end, len(lines) - 1)
        found: list[Offer] = []
        for p in problems:
            if p.start_line <= end and p.end_line >= start:
                data = ActionData("fix", uri, version, start, end, diagnostics=[p.message])
                found.append(Offer(f"Fix: {p.message[:60]}", ActionKind.FIX, data))
        if any(line.strip() for line in lines[start : end + 1]):
            instruction = instruction_above(lines, start)
            if instruction:
                data = ActionData("rewrite", uri, version, start, end, instruction=instruction)
                found.append(Offer(f"Rewrite: {instruction[:60]}", ActionKind.REWRITE, data))
            data = ActionData("document", uri, version, start, end)
            found.append(Offer("Document this code", ActionKind.REWRITE, data))
            if not _is_test_file(path_of(uri)):
                data = ActionData("tests", uri, version, start, end)
                found.append(Offer("Write tests", ActionKind.REFACTOR, data))
        return found

    async def quoted(self, offers: Sequence[Offer], text: str) -> Sequence[Offer]:
        """`offers` with what each would cost in its title, where the route that would
        answer it is a paid one: `Document this code · claude-sonnet-4 · ~$0.0004`."""
        if not offers or not self._routes.paid_first(
            RequestKind.CODE_ACTION, path_of(offers[0].data.uri)
        ):
            return offers  # nothing to price: the prompts (and their sources) not built
        out = []
        found: dict[str, str] = {}  # the sources, per instruction: the same code for all
        for offer in offers:
            try:
                request = self._request(offer.data, text, found)
            except StaleEdit:
                out.append(offer)
                continue
            quote = await self._routes.quote(
                RequestKind.CODE_ACTION,
                request.path,
                self.messages(request),
                self.settings.max_tokens,
            )
            if quote is not None:
                offer = msgspec.structs.replace(offer, title=f"{offer.title} · {quote.title()}")
            out.append(offer)
        return out

    def _request(
        self, data: ActionData, text: str, found: dict[str, str] | None = None
    ) -> ActionRequest:
        """The request of action `data` on `text` (the version it was listed for);
        `found` keeps the sources looked up for other actions on the same lines."""
        lines = text.split("\n")
        if data.end_line >= len(lines):
            raise StaleEdit("the selection is no longer in the document; run it again")
        n = self.settings.context_lines
        code = "\n".join(lines[data.start_line : data.end_line + 1])
        target = (
            test_target(path_of(data.uri), self._editor.workspace_root)
            if data.action == "tests"
            else None
        )
        found = {} if found is None else found
        if data.instruction not in found:
            found[data.instruction] = sources_for(
                self._editor.index,
                Path(path_of(data.uri)),
                text,
                code,
                data.instruction,
                self.settings.repository_tokens,
                tuple(self._settings.policy.privacy.private),
            ).prompt
        return ActionRequest(
            action=data.action,
            path=path_of(data.uri),
            code=code,
            before="\n".join(lines[max(0, data.start_line - n) : data.start_line]),
            after="\n".join(lines[data.end_line + 1 : data.end_line + 1 + n]),
            repository=found[data.instruction],
            instruction=data.instruction,
            diagnostics=tuple(data.diagnostics),
            test_path=target.path if target else "",
            module=target.module if target else "",
            framework=target.framework if target else "",
        )

    async def edit(
        self, data: ActionData, text: str, current_version: Callable[[], int | None]
    ) -> tuple[DocumentEdit, Answer]:
        """The edit for `data`, computed against `text` (the version it was listed for)."""
        if current_version() != data.version:
            raise StaleEdit("the document changed since this action was offered; run it again")
        request = self._request(data, text)
        lines = text.split("\n")
        code = request.code
        target = (
            TestTarget(request.test_path, request.module, request.framework)
            if request.test_path
            else None
        )
        answer = await self._routes.ask(
            RequestKind.CODE_ACTION, request.path, self.messages(request), self.settings.max_tokens
        )
        if current_version() != data.version:
            raise StaleEdit("the document changed while the answer was computed; run it again")
        if answer.finish_reason == "length":
            limit = self.settings.max_tokens
            raise IncompleteAnswer(
                f"the answer from {answer.model} used all its tokens before it ended, so the "
                f"edit would be incomplete; nothing was changed. Raise `[actions] max_tokens` "
                f"(now {limit}) or select less code"
            )
        produced = code_only(for_editor(answer.text, keep_bidi=has_bidi(code)))
        if target is not None:
            return _test_file_edit(target, produced), answer
        new_code = reindent(produced, code).replace("\r\n", "\n")
        # The file's line ends stay its own: a model answers in `\n`.
        eol = "\r\n" if lines[data.start_line].endswith("\r") else "\n"
        new_code = new_code.replace("\n", eol)
        start = sum(len(line) + 1 for line in lines[: data.start_line])
        end = start + len(code)
        if data.end_line + 1 < len(lines):
            end, new_code = end + 1, new_code + eol  # the whole lines, their line end too
        return DocumentEdit(data.uri, data.version, text, start, end, new_code), answer


def _test_file_edit(target: TestTarget, content: str) -> DocumentEdit:
    """Create the test file, or append to it when it exists."""
    path = Path(target.path)
    uri = path.as_uri()
    if path.exists():
        existing = path.read_text(encoding="utf-8", errors="replace")
        sep = "" if existing.endswith("\n\n") else "\n" if existing.endswith("\n") else "\n\n"
        end = len(existing)
        return DocumentEdit(uri, None, existing, end, end, f"{sep}\n{content}\n")
    return DocumentEdit(uri, None, "", 0, 0, content + "\n", create=True)
