"""Every whole-server test runs against both ways `aiguilleur serve` runs: relayed to the
user's daemon (what editors get by default) and `--standalone`. A module that is about
one of them says so with `SERVER_MODES = ("daemon",)`."""

from __future__ import annotations

import pytest

from tests.support.home import SERVER_MODES


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_mode" in metafunc.fixturenames:
        modes = getattr(metafunc.module, "SERVER_MODES", SERVER_MODES)
        if (only := metafunc.definition.get_closest_marker("server_modes")) is not None:
            modes = only.args
        metafunc.parametrize("server_mode", modes)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server_modes(*modes): run this test only with these ways of serving"
    )
