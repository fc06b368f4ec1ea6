from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.home import TestHome


def aiguilleur(home: TestHome, *args: str) -> subprocess.CompletedProcess[str]:
    return home.cli(*args)


def test_complete_prints_a_suggestion(model_home: TestHome) -> None:
    src = model_home.workspace / "a.py"
    src.write_text("def f(x):\n    return x\n")
    result = aiguilleur(model_home, "complete", f"{src}:2:12")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "prompt tokens" in result.stderr


def test_doctor_reports_model_and_fim_tokens(model_home: TestHome) -> None:
    result = aiguilleur(model_home, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FIM tokens from gguf" in result.stdout and "all good" in result.stdout


def test_doctor_says_how_many_threads_the_engine_would_run_and_why(
    model_home: TestHome,
) -> None:
    one_core = {sorted(os.sched_getaffinity(0))[0]}
    pinned = subprocess.run(
        [sys.executable, "-m", "aiguilleur", "doctor"],
        capture_output=True,
        text=True,
        env=model_home.env(),
        cwd=model_home.workspace,
        timeout=300,
        preexec_fn=lambda: os.sched_setaffinity(0, one_core),
    )
    assert "threads: 1 of 1 usable cores now: " in pinned.stdout, pinned.stdout
    usable = len(os.sched_getaffinity(0))
    out = aiguilleur(model_home, "doctor").stdout
    # How many of them depends on what else this machine runs: the reason says.
    assert f" of {usable} usable cores now: " in out, out
    assert "other programs use " in out and "prefill and prefetch " in out
    config = model_home.config_file.read_text()
    with_threads = config.replace("n_ctx = 2048", "n_ctx = 2048\nn_threads = 3")
    model_home.write_config(with_threads)
    assert "threads: 3 ([local] n_threads)" in aiguilleur(model_home, "doctor").stdout
    model_home.write_config(config.replace("n_ctx = 2048", "n_ctx = 2048\nadapt_to_load = false"))
    out = aiguilleur(model_home, "doctor").stdout
    assert f"threads: {usable} of {usable} usable cores now: [local] adapt_to_load = false" in out


def test_doctor_names_each_problem_with_its_fix(home: TestHome) -> None:
    home.write_config('[local]\nmodel = "/nowhere.gguf"\n[completion]\nprefix_token = 5\n')
    result = aiguilleur(home, "doctor")
    assert result.returncode == 1
    assert "completion.prefix_token" in result.stdout
    assert "/nowhere.gguf" in result.stdout and "aiguilleur pull" in result.stdout


def test_tcp_refuses_non_loopback_without_allow_remote(home: TestHome) -> None:
    result = aiguilleur(home, "serve", "--tcp", "0.0.0.0:9999")
    assert result.returncode != 0
    assert "--allow-remote" in result.stderr


def test_pull_rejects_unknown_models(home: TestHome, tmp_path: Path) -> None:
    result = aiguilleur(home, "pull", "gpt-17")
    assert result.returncode == 1 and "known:" in result.stdout


def test_cache_stats_and_clear(home: TestHome) -> None:
    from aiguilleur.cache.kv import KVStateStore

    kv = home.root / "cache" / "aiguilleur" / "kv"
    store = KVStateStore("some-model.abc", kv, 1 << 20, 1 << 30)
    store.put(list(range(640)), b"\x01" * 64_000)
    store.close()

    stats = aiguilleur(home, "cache", "stats")
    assert stats.returncode == 0, stats.stderr
    assert "some-model.abc: 1 states" in stats.stdout and "640 tokens" in stats.stdout
    assert "states saved: 1" in stats.stdout

    cleared = aiguilleur(home, "cache", "clear")
    assert cleared.returncode == 0 and "removed 1 KV states" in cleared.stdout
    assert "no states stored yet" in aiguilleur(home, "cache").stdout


def test_a_second_complete_restores_the_first_ones_kv_state(model_home: TestHome) -> None:
    src = model_home.workspace / "b.py"
    src.write_text("".join(f"value_{i} = compute({i})\n" for i in range(20)) + "total = ")
    first = aiguilleur(model_home, "complete", f"{src}:21:9")
    second = aiguilleur(model_home, "complete", f"{src}:21:9")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert " 0 restored" in first.stderr
    assert " 0 restored" not in second.stderr and "restored from the KV cache" in second.stderr
    assert second.stdout == first.stdout


def test_usage_shows_spend_and_budgets_left(home: TestHome) -> None:
    import json

    from aiguilleur.remote.ledger import Budget, SpendLedger

    home.write_config('[keys.work]\nenv = "X"\ndaily = 2.0\nmonthly = 10.0\n')
    ledger = SpendLedger(home.root / "data" / "aiguilleur" / "ledger.db")
    r = ledger.reserve("work", 0.5, Budget(daily=2.0), route="cloud", model="a/b", feature="chat")
    ledger.settle(r, 0.25, model_used="a/b-2024", prompt_tokens=1000, completion_tokens=200)
    ledger.cache_hit("work", route="cloud", model="a/b-2024", feature="chat")
    ledger.close()

    text = aiguilleur(home, "usage")
    assert text.returncode == 0, text.stderr
    assert "a/b-2024" in text.stdout and "0.2500" in text.stdout and "1000/200" in text.stdout
    assert "$1.7500 of $2.00" in text.stdout and "#" in text.stdout
    data = json.loads(aiguilleur(home, "usage", "--json").stdout)
    [row] = data["rows"]
    assert row["requests"] == 2 and row["cache_hits"] == 1
    assert {(b["period"], b["left_usd"]) for b in data["budgets"]} == {
        ("daily", 1.75),
        ("monthly", 9.75),
    }


def test_trust_pins_the_workspace_file_and_doctor_says_what_is_ignored(home: TestHome) -> None:
    ws_file = home.workspace / ".aiguilleur.toml"
    ws_file.write_text("[completion]\nmax_tokens = 512\n")
    untrusted = aiguilleur(home, "doctor")
    assert "(not trusted" in untrusted.stdout
    assert "ignored, for want of trust: completion.max_tokens = 512" in untrusted.stdout
    assert f"aiguilleur trust {home.workspace}" in untrusted.stdout

    trusted = aiguilleur(home, "trust")
    assert trusted.returncode == 0 and "completion.max_tokens = 512" in trusted.stdout
    listed = aiguilleur(home, "trust", "--list")
    assert listed.stdout.startswith(f"trusted   {ws_file}")
    assert "(trusted: all its settings apply" in aiguilleur(home, "doctor").stdout

    ws_file.write_text("[completion]\nmax_tokens = 1024\n")
    assert aiguilleur(home, "trust", "--list").stdout.startswith(f"changed   {ws_file}")
    assert "(changed since you trusted it" in aiguilleur(home, "doctor").stdout

    assert aiguilleur(home, "trust", "--revoke", str(home.workspace)).returncode == 0
    assert aiguilleur(home, "trust", "--list").stdout == "no trusted workspace files\n"
    assert aiguilleur(home, "trust", "--revoke").returncode == 1  # nothing left to revoke


def test_trust_without_a_workspace_file_says_so(home: TestHome) -> None:
    result = aiguilleur(home, "trust")
    assert result.returncode == 1 and ".aiguilleur.toml" in result.stdout


def test_index_builds_the_workspaces_index_then_reads_only_what_changed(home: TestHome) -> None:
    (home.workspace / "pkg").mkdir()
    (home.workspace / "pkg" / "models.py").write_text("class User:\n    def rename(self): ...\n")
    (home.workspace / "pkg" / "views.py").write_text("def show(user): ...\n")
    (home.workspace / ".env").write_text("API_KEY=x\n")  # private: never read
    first = aiguilleur(home, "index")
    assert first.returncode == 0, first.stderr
    assert "2 files, 3 definitions (2 read now, 0 left out" in first.stdout
    again = aiguilleur(home, "index", str(home.workspace))
    assert "2 files, 3 definitions (0 read now" in again.stdout
    assert "not a directory" in aiguilleur(home, "index", "nowhere").stderr


def test_doctor_says_what_the_workspaces_index_holds(home: TestHome) -> None:
    (home.workspace / "models.py").write_text("class User:\n    def rename(self): ...\n")
    assert "is not indexed yet" in aiguilleur(home, "doctor").stdout
    aiguilleur(home, "index")
    out = aiguilleur(home, "doctor").stdout
    assert f"{home.workspace.resolve()}: 1 files, 2 definitions, " in out, out
    assert "repository block budgets (tokens): completions 1024, actions 512, chat 512" in out
    home.write_config("[index]\nenabled = false\n")
    assert "off (`[index] enabled = false`)" in aiguilleur(home, "doctor").stdout
