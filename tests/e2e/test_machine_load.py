"""The engine beside other programs: real CPU-bound processes, the real server. What is
asserted holds however busy the machine already is (more load only confirms it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from aiguilleur.backends.threads import usable_cores
from tests.support.home import TestHome
from tests.support.lsp import idle, inline, lsp_session, open_doc, status


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` CPU-bound processes, each in a session of its own (as a build started in
    a terminal), killed on the way out."""
    processes = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.skipif(usable_cores() < 2, reason="on one core there is no thread to give up")
async def test_beside_busy_programs_the_engine_gives_up_threads_and_still_answers(
    model_home: TestHome,
) -> None:
    cores = usable_cores()
    async with lsp_session(model_home) as client:
        uri = open_doc(client, model_home.workspace / "m.py", "def f(x):\n    return \n")
        await idle(client)
        with busy_processes(cores):
            # The engine measures the machine when a request starts, over the time since
            # its last measure: let the busy processes run a while first.
            await asyncio.sleep(1.0)
            answers = [await inline(client, uri, 1, 11) for _ in range(3)]
            s = await status(client)
    assert all(isinstance(a, list) for a in answers)
    choice = s.engine.threads
    assert choice.threads < cores, choice
    assert choice.others is not None and choice.others >= 1, choice
    assert "other programs use" in choice.reason
    assert s.engine.completed >= 1
