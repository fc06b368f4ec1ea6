"""LSP wiring of the code actions: listing, `codeAction/resolve` and the
`aiguilleur.action` command (for clients that do not resolve edits)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcContentModified, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from aiguilleur.errors import IncompleteAnswer
from aiguilleur.features.actions import ACTION_COMMAND, ActionData, DocumentEdit, Problem, StaleEdit
from aiguilleur.lsp.chat import chat_actions, is_chat
from aiguilleur.lsp.positions import position_at, selected_lines
from aiguilleur.routing.route_loop import NoRoute
from aiguilleur.types import Answer

if TYPE_CHECKING:
    from aiguilleur.lsp.session import Session


def register(server: LanguageServer, session: Session) -> None:
    def ls_docs() -> dict[str, Any]:
        docs: dict[str, Any] = server.workspace.text_documents
        return docs

    def resolvable() -> bool:
        td = server.client_capabilities.text_document
        support = td.code_action.resolve_support if td and td.code_action else None
        return bool(support and "edit" in support.properties)

    @server.feature(
        lsp.TEXT_DOCUMENT_CODE_ACTION,
        lsp.CodeActionOptions(
            code_action_kinds=[
                lsp.CodeActionKind.QuickFix,
                lsp.CodeActionKind.Refactor,
                lsp.CodeActionKind.RefactorRewrite,
            ],
            resolve_provider=True,
        ),
    )
    async def code_action(ls: LanguageServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        doc = ls_docs().get(params.text_document.uri)
        if doc is None:
            return []
        await session.routes_ready()  # the routes that would answer, to tell their price
        if is_chat(doc.source):
            listed = chat_actions(doc.uri, doc.source, params)
            # Send, with what it would cost where a paid route would answer.
            quote = await session.chat.quote(doc.uri, doc.source)
            if quote is not None:
                for action in listed:
                    action.title = f"{action.title} · {quote.title()}"
                    if action.command is not None:
                        action.command.title = action.title
            return listed
        start, end = selected_lines(params.range)
        problems = [
            Problem(d.message, d.range.start.line, d.range.end.line)
            for d in params.context.diagnostics
        ]
        found = session.actions.list(doc.uri, doc.source, doc.version, start, end, problems)
        offers = await session.actions.quoted(found, doc.source)
        listed = []
        with_command = not resolvable()
        for offer in offers:
            plain = msgspec.to_builtins(offer.data)
            title = f"aiguilleur: {offer.title}"
            kind = lsp.CodeActionKind(offer.kind.value)
            action = lsp.CodeAction(title=title, kind=kind, data=plain)
            if with_command:
                action.command = lsp.Command(title, ACTION_COMMAND, arguments=[plain])
            listed.append(action)
        return listed + chat_actions(doc.uri, doc.source, params)

    def is_ours(data: Any) -> bool:
        try:
            msgspec.convert(data, ActionData)
        except (msgspec.ValidationError, TypeError):
            return False
        return True

    async def action_edit(data: Any) -> tuple[lsp.WorkspaceEdit, Answer]:
        await session.ready()
        try:
            action = msgspec.convert(data, ActionData)
        except (msgspec.ValidationError, TypeError) as error:
            raise JsonRpcInvalidParams(f"not an aiguilleur action: {error}") from error
        doc = ls_docs().get(action.uri)
        if doc is None:
            raise JsonRpcContentModified("the document is closed; run the action again")

        def current_version() -> int | None:
            d = ls_docs().get(action.uri)
            return None if d is None else d.version

        try:
            edit, answer = await session.actions.edit(action, doc.source, current_version)
            return workspace_edit(edit, session.encoding()), answer
        except StaleEdit as error:
            session.show(f"aiguilleur: {error}")
            raise JsonRpcContentModified(str(error)) from error
        except (NoRoute, IncompleteAnswer) as error:
            session.show(f"aiguilleur: {error}")
            raise JsonRpcInternalError(str(error)) from error

    @server.feature(lsp.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: LanguageServer, action: lsp.CodeAction) -> lsp.CodeAction:
        if not is_ours(action.data):
            # Helix resolves every action before running it, including those that carry
            # only a command (Explain, Ask, Send) and other servers' ones: nothing to add.
            return action
        edit, answer = await action_edit(action.data)
        action.edit = edit
        session.log_paid(answer.model, answer.route, answer.usage)
        return action

    @server.command(ACTION_COMMAND)
    async def action_command(ls: LanguageServer, *args: Any) -> Any:
        if not args:
            raise JsonRpcInvalidParams("aiguilleur.action needs the action as its argument")
        edit, answer = await action_edit(args[0])
        session.log_paid(answer.model, answer.route, answer.usage)
        result = await server.workspace_apply_edit_async(
            lsp.ApplyWorkspaceEditParams(edit=edit, label="aiguilleur")
        )
        if not result.applied:
            session.show(f"aiguilleur: the editor did not apply the edit ({result.failure_reason})")
        return {"applied": result.applied}


def workspace_edit(edit: DocumentEdit, encoding: str) -> lsp.WorkspaceEdit:
    """The edit as the editor applies it. Both forms for an existing document:
    `documentChanges` makes a client check the version too."""
    rng = lsp.Range(
        position_at(edit.base, edit.start, encoding), position_at(edit.base, edit.end, encoding)
    )
    change = lsp.TextEdit(rng, edit.new_text)
    doc = lsp.TextDocumentEdit(
        lsp.OptionalVersionedTextDocumentIdentifier(edit.uri, edit.version), [change]
    )
    if edit.create:
        return lsp.WorkspaceEdit(document_changes=[lsp.CreateFile(uri=edit.uri), doc])
    return lsp.WorkspaceEdit(changes={edit.uri: [change]}, document_changes=[doc])
