"""LSP wiring of what the user and the tests can ask of the server: `aiguilleur/status`
(the model, the engine, the KV store, the settings and their problems, the process) and
the `aiguilleur.usage` command (what was spent, what is left)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import msgspec
from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from aiguilleur.config.homes import data_dir
from aiguilleur.lsp.session import Session
from aiguilleur.remote.usage import report

STATUS = "aiguilleur/status"
USAGE_COMMAND = "aiguilleur.usage"


def register(server: LanguageServer, session: Session) -> None:
    @server.feature(STATUS)
    def status(ls: LanguageServer, params: Any) -> Any:
        rt = session.runtime
        return {
            "model": msgspec.to_builtins(rt.model_info) if rt.model_info else None,
            "model_problem": rt.load_error,
            "engine": msgspec.to_builtins(rt.engine.stats()) if rt.engine else None,
            "kv": msgspec.to_builtins(kv) if (kv := rt.kv_stats()) else None,
            "models": msgspec.to_builtins(rt.model_loads()),
            "index": msgspec.to_builtins(session.index.stats()) if session.index else None,
            "config_sources": list(session.loaded.sources),
            "config_problems": [p.describe() for p in session.loaded.problems],
            "workspace_trust": session.loaded.trust.value,
            "ignored_untrusted": [i.describe() for i in session.loaded.ignored],
            # Which process answers: a daemon's is the same for every window.
            "pid": os.getpid(),
            "shared": session.shared,
        }

    @server.command(USAGE_COMMAND)
    async def usage_command(ls: LanguageServer, *args: Any) -> Any:
        await asyncio.to_thread(session.runtime.acceptance.flush)  # counts up to now
        r = await asyncio.to_thread(report, session.runtime.config, data_dir() / "ledger.db", 30)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        spent_today = sum(row.cost_usd for row in r.rows if row.day == today)
        left = "; ".join(f"{b.key} {b.period}: ${b.left_usd:.2f} left" for b in r.budgets)
        if args and isinstance(args[0], dict) and args[0].get("quiet"):
            return msgspec.to_builtins(r)  # a status bar polling: no message
        taken = [
            f"{a.route} {a.accepted + a.partial} of {a.shown} taken"
            + (f" (${a.cost_per_accepted_usd:.4f} each)" if a.cost_per_accepted_usd else "")
            for a in r.acceptance
            if a.day == today
        ]
        session.show(
            f"aiguilleur: ${spent_today:.4f} spent today, ${r.total_usd:.4f} in 30 days"
            + (f"; {left}" if left else "")
            + (f"; suggestions today: {', '.join(taken)}" if taken else "")
            + " (`aiguilleur usage` for the details)",
            lsp.MessageType.Info,
        )
        return msgspec.to_builtins(r)
