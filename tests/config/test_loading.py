from __future__ import annotations

from pathlib import Path

from aiguilleur.config.loading import ConfigLayers
from aiguilleur.config.trust_store import TrustStore


def test_layers_merge_in_order_and_bad_keys_fall_back(tmp_path: Path) -> None:
    user = tmp_path / "user.toml"
    user.write_text("[completion]\nmax_tokens = 32\nprefix_tokens = 900\n[local]\nn_ctx = 2048\n")
    (tmp_path / ".aiguilleur.toml").write_text(
        '[completion]\nmax_tokens = "x"\nsuffix_tokens = 64\n[cache]\ndir = "/elsewhere"\n'
    )
    layers = ConfigLayers(tmp_path, user, TrustStore(tmp_path / "trusted.json"))
    layers.init_options = {"completion": {"prefix_tokens": 700}}
    layers.client_settings = {"local": {"n_ctx": 8192}}
    loaded = layers.load()
    c = loaded.config
    assert c.completion.max_tokens == 32  # the workspace's bad value fell back to the user's
    assert c.completion.suffix_tokens == 64
    assert c.completion.prefix_tokens == 700
    assert c.local.n_ctx == 8192
    assert c.cache.dir is None  # a cloned repo cannot move our cache
    keys = {p.key for p in loaded.problems}
    assert keys == {"completion.max_tokens", "cache"}


def test_unreadable_toml_is_named_and_ignored(tmp_path: Path) -> None:
    user = tmp_path / "user.toml"
    user.write_text("[local\n")
    loaded = ConfigLayers(None, user).load()
    assert loaded.config.local.model is None
    [problem] = loaded.problems
    assert str(user) in problem.describe() and "line 1" in problem.describe()


def test_an_unknown_backend_costs_only_that_field_and_the_route_stays_on_the_machine(
    tmp_path: Path,
) -> None:
    user = tmp_path / "config.toml"
    user.write_text(
        '[completion]\nmax_tokens = 9\n[[routes.completion]]\nname = "gpu"\n'
        'backend = "ollama"\nmodel = "qwen"\n'
    )
    loaded = ConfigLayers(user_file=user).load()
    [problem] = loaded.problems
    assert problem.key == "routes.completion.0.backend"
    assert "one of local, openrouter, openai-compatible" in problem.describe()
    # The rest of the file applies; the route falls back to the local engine (a typo must
    # not send code anywhere).
    assert loaded.config.completion.max_tokens == 9
    [route] = loaded.config.routes.completion
    assert route.name == "gpu" and route.backend == "local"
