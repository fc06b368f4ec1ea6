"""What the code at the cursor depends on, from the index: the definitions of the names it
imports from other files and uses near the cursor, as stubs, within a budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiguilleur.context.index import RepositoryIndex, store_dir
from aiguilleur.context.retrieval import Imported, dependencies, scan_imports

MODELS = '''"""Models."""


class User(Base):
    """A person who logs in."""

    table = "users"

    def __init__(self, name: str) -> None:
        self.name = name

    def rename(self, new_name: str) -> "User":
        """Give the user another name."""
        self.name = new_name
        return self


def load_user(user_id: int) -> User:
    """The user with this id."""
    return User(str(user_id))


UNUSED = 1
'''


@pytest.fixture
def index(tmp_path: Path) -> RepositoryIndex:
    root = tmp_path / "repo"
    (root / "app" / "db").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "db" / "__init__.py").write_text("from .models import User, load_user\n")
    (root / "app" / "db" / "models.py").write_text(MODELS)
    (root / "app" / "util.py").write_text("def slug(text: str) -> str:\n    ...\n")
    (root / "app" / "views.py").write_text("")
    idx = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    idx.refresh()
    return idx


def test_imports_are_read_line_by_line_as_the_user_types() -> None:
    text = (
        "import os, sys as system\nimport app.db.models\n"
        "from app.db import (\n    User,  # the model\n    load_user as load,\n)\n"
        "from . import util\nfrom .. import x  # noqa\nfrom app import *\n"
    )
    assert scan_imports(text) == [
        Imported("os", "os", ""),
        Imported("system", "sys", ""),
        Imported("app", "app", ""),
        Imported("User", "app.db", "User"),
        Imported("load", "app.db", "load_user"),
        Imported("util", ".", "util"),
        Imported("x", "..", "x"),
    ]


def test_a_class_used_near_the_cursor_comes_with_its_members(index: RepositoryIndex) -> None:
    text = "from app.db import User\n\n\ndef greet(u: User) -> str:\n    return u.\n"
    [chunk] = dependencies(index, "app/views.py", text, len(text) - 1, 1024)
    assert chunk.path == "app/db/models.py"  # through the package's re-export
    assert "class User(Base):" in chunk.text
    assert '"""A person who logs in."""' in chunk.text
    assert "def rename(self, new_name: str) -> 'User':" in chunk.text
    assert "name = ..." in chunk.text and "table = 'users'" in chunk.text
    assert "self.name = new_name" not in chunk.text  # never a body
    assert "load_user" not in chunk.text and "UNUSED" not in chunk.text  # not used here


def test_modules_imported_whole_give_what_is_used_through_them(index: RepositoryIndex) -> None:
    text = "import app.db.models as m\nfrom . import util\n\nx = util.slug(m.load_user(1).name)\n"
    chunks = dependencies(index, "app/views.py", text, len(text) - 1, 1024)
    assert [c.path for c in chunks] == ["app/util.py", "app/db/models.py"] or [
        c.path for c in chunks
    ] == ["app/db/models.py", "app/util.py"]
    texts = "".join(c.text for c in chunks)
    assert (
        "def slug(text: str) -> str:" in texts and "def load_user(user_id: int) -> User:" in texts
    )
    dotted = "import app.db.models\n\nx = app.db.models.load_user(1)\n"
    [chunk] = dependencies(index, "app/views.py", dotted, len(dotted) - 1, 1024)
    assert "def load_user" in chunk.text


def test_the_budget_keeps_the_names_used_closest_to_the_cursor(index: RepositoryIndex) -> None:
    text = "from app.db import User\nfrom app.util import slug\n\nUser\n\n\nslug(\n"
    [chunk] = dependencies(index, "app/views.py", text, len(text) - 1, 20)
    assert "def slug" in chunk.text  # 20 tokens: the class with its members does not fit
    assert dependencies(index, "app/views.py", "x = 1\n", 5, 1024) == ()
    assert dependencies(index, "app/views.py", "import os\nos.path\n", 16, 1024) == ()


def test_the_receivers_class_comes_first_when_this_file_says_what_it_is(
    index: RepositoryIndex,
) -> None:
    """`self.owner: User`, `owner = User(...)` or `owner: "User"` earlier in the file:
    `owner.` gets User's members before anything else, even a class the file does not
    name near the cursor."""
    annotated = "class View:\n    def __init__(self) -> None:\n        self.owner: User = None\n"
    text = annotated + "\n    def show(self):\n        return self.owner."
    assert dependencies(index, "app/views.py", text, len(text), 1024)[0].path == "app/db/models.py"
    built = "from app.util import slug\nowner = User('x')\nslug(owner."
    chunks = dependencies(index, "app/views.py", built, len(built), 1024)
    assert chunks[0].path == "app/db/models.py" and "def rename" in chunks[0].text
    quoted = "from app.util import slug\n\ndef f(x, who: t.Optional['User'] = None):\n    who."
    chunks = dependencies(index, "app/views.py", quoted, len(quoted), 1024)
    assert chunks[0].path == "app/db/models.py" and "def rename" in chunks[0].text
    assert dependencies(index, "app/views.py", "x = 1\nself.", 12, 1024) == ()


def test_self_gets_the_members_of_the_base_class_defined_in_another_file(
    index: RepositoryIndex,
) -> None:
    text = (
        "from app.db.models import User\n\n\nclass Admin(User):\n"
        "    def promote(self) -> None:\n        self."
    )
    [chunk] = dependencies(index, "app/views.py", text, len(text), 1024)
    assert chunk.path == "app/db/models.py"
    assert "class User(Base):" in chunk.text and "def rename(self, new_name: str)" in chunk.text


def test_a_module_before_the_cursor_gets_its_names_and_a_call_what_it_returns(
    index: RepositoryIndex,
) -> None:
    text = "from app.db import models\n\nmodels."
    [chunk] = dependencies(index, "app/views.py", text, len(text), 1024)
    assert chunk.path == "app/db/models.py"
    assert "def load_user(user_id: int) -> User: ..." in chunk.text and "UNUSED = 1" in chunk.text
    called = "from app.db.models import load_user\n\nload_user(3)."
    chunks = dependencies(index, "app/views.py", called, len(called), 1024)
    assert "class User(Base):" in chunks[0].text and "def rename" in chunks[0].text


def test_a_private_file_never_feeds_the_block(index: RepositoryIndex) -> None:
    text = "from app.db import User\n\n\ndef greet(u: User) -> str:\n    return u.\n"
    assert (
        dependencies(index, "app/views.py", text, len(text) - 1, 1024, lambda p: "db/" in p) == ()
    )


def test_a_long_signature_is_cut_after_its_name_and_first_parameters(tmp_path: Path) -> None:
    """Whatever its length, and with or without a return annotation, a member keeps its
    name and first parameters (a cut once dropped the name of those without `->`)."""
    root = tmp_path / "repo"
    root.mkdir()
    params = ", ".join(f"argument_{i}: str | None = None" for i in range(6))
    (root / "api.py").write_text(
        f"class Client:\n    def upload_file(self, {params}):\n        ...\n"
        f"    def download_file(self, {params}) -> bytes:\n        ...\n"
    )
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    index.refresh()
    text = "from api import Client\n\n\ndef f(c: Client):\n    c."
    [chunk] = dependencies(index, "main.py", text, len(text), 1024)
    assert "    def upload_file(self, argument_0: str | None=None," in chunk.text
    assert ", ...): ..." in chunk.text
    assert "    def download_file(self, argument_0: str | None=None," in chunk.text
    assert ", ...) -> bytes: ..." in chunk.text
    assert all(len(line) <= 120 for line in chunk.text.splitlines())


def test_a_big_classs_members_that_share_words_with_the_function_come_first(
    tmp_path: Path,
) -> None:
    """Of a class too big for the budget, the members named like what the function around
    the cursor is about are the ones that make it in."""
    root = tmp_path / "repo"
    root.mkdir()
    filler = "".join(
        f"    def method_number_{i}(self, value: int) -> int: ...\n" for i in range(60)
    )
    (root / "api.py").write_text(
        f"class Api:\n{filler}    def list_parquet_files(self, dataset: str) -> list: ...\n"
    )
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    index.refresh()
    text = (
        "from api import Api\n\n\ndef show_parquet_files(api: Api, dataset: str):\n"
        "    entries = api."
    )
    [chunk] = dependencies(index, "main.py", text, len(text), 200)
    assert "def list_parquet_files(self, dataset: str) -> list: ..." in chunk.text
    assert "method_number_59" not in chunk.text  # the budget holds a few members only


def test_a_name_set_from_a_call_gets_the_class_the_function_returns(
    index: RepositoryIndex,
) -> None:
    """`u = load_user(3)` then `u.`: load_user says it returns a User."""
    text = "from app.db.models import load_user\n\n\ndef f():\n    u = load_user(3)\n    u."
    chunks = dependencies(index, "app/views.py", text, len(text), 1024)
    assert "class User(Base):" in chunks[0].text and "def rename" in chunks[0].text


def test_a_dotted_receiver_is_followed_member_by_member(tmp_path: Path) -> None:
    """`car.motor.`: this file says car is a Car, Car (another file) says its motor
    is an Engine (a third file): Engine's members."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "engine.py").write_text("class Engine:\n    def start(self, fuel: str) -> None: ...\n")
    (root / "car.py").write_text(
        "from engine import Engine\n\n\nclass Car:\n    def __init__(self) -> None:\n"
        "        self.motor: Engine = Engine()\n"
    )
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    index.refresh()
    text = "from car import Car\n\n\ndef drive(car: Car):\n    car.motor."
    chunks = dependencies(index, "main.py", text, len(text), 1024)
    assert chunks[0].path == "engine.py" and "def start(self, fuel: str)" in chunks[0].text


def _workspace(tmp_path: Path, files: dict[str, str]) -> RepositoryIndex:
    root = tmp_path / "repo"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    index.refresh()
    return index


def test_a_name_bound_by_with_gets_the_class_its_call_returns(tmp_path: Path) -> None:
    """`async with open_group() as tg:` then `tg.`: open_group says it returns a Group."""
    index = _workspace(
        tmp_path,
        {
            "tasks.py": "class Group:\n    def start_soon(self, fn) -> None: ...\n\n\n"
            "def open_group() -> Group: ...\n"
        },
    )
    text = (
        "from tasks import open_group\n\n\n"
        "async def main():\n    async with open_group() as tg:\n        tg."
    )
    chunks = dependencies(index, "main.py", text, len(text), 1024)
    assert chunks and "def start_soon(self, fn) -> None" in chunks[0].text


def test_a_receivers_class_comes_with_its_bases(tmp_path: Path) -> None:
    """`report.` with report a TestReport: what a line uses is as often inherited
    (`report.failed` from BaseReport, two files up) as defined in TestReport itself."""
    index = _workspace(
        tmp_path,
        {
            "base.py": "class BaseReport:\n    @property\n    def failed(self) -> bool: ...\n",
            "reports.py": "from base import BaseReport\n\n\nclass TestReport(BaseReport):\n"
            "    def __init__(self) -> None:\n        self.when = 'call'\n",
        },
    )
    text = "from reports import TestReport\n\n\ndef show(report: TestReport):\n    if report."
    chunks = dependencies(index, "main.py", text, len(text), 1024)
    assert [c.path for c in chunks[:2]] == ["reports.py", "base.py"]
    assert "def failed(self) -> bool" in chunks[1].text


def test_an_imported_instance_gets_its_class(tmp_path: Path) -> None:
    """`from output import out` where output.py says `out = Output()`: `out.` gets
    Output's members."""
    index = _workspace(
        tmp_path,
        {
            "output.py": "class Output:\n    def table(self, rows: list) -> None: ...\n\n\n"
            "out = Output()\n"
        },
    )
    text = "from output import out\n\n\ndef show(rows):\n    out."
    chunks = dependencies(index, "main.py", text, len(text), 1024)
    assert chunks and "def table(self, rows: list) -> None" in chunks[0].text


def test_a_package_used_through_its_name_gives_what_it_exports(tmp_path: Path) -> None:
    """`import fs` then `fs.`: fs/__init__.py defines nothing but imports what it
    exports; those definitions come, from the files that define them. `from . import
    logs` (the package importing its submodule from elsewhere) is a module too."""
    index = _workspace(
        tmp_path,
        {
            "fs/__init__.py": "from .spec import FileSystem\nfrom .util import logs\n",
            "fs/spec.py": "class FileSystem:\n    def isdir(self, path: str) -> bool: ...\n",
            "fs/util/__init__.py": "",
            "fs/util/logs.py": "def get_logger(name: str): ...\n",
        },
    )
    text = "import fs\n\n\nclass Local(fs."
    chunks = dependencies(index, "fs/local.py", text, len(text), 1024)
    assert any(c.path == "fs/spec.py" and "class FileSystem" in c.text for c in chunks)
    text = "from . import logs\n\nlogger = logs."
    chunks = dependencies(index, "fs/cli.py", text, len(text), 1024)
    assert chunks and chunks[0].path == "fs/util/logs.py" and "def get_logger" in chunks[0].text


def test_of_a_big_class_the_members_most_files_use_come_first(tmp_path: Path) -> None:
    """Nothing in the function says which member a line needs: those the workspace's
    files use the most make it into a small budget, private or not."""
    filler = "".join(f"    def method_number_{i}(self) -> int: ...\n" for i in range(60))
    users = {f"user_{i}.py": "def f(c):\n    return c._strip_protocol(c.path)\n" for i in range(3)}
    index = _workspace(
        tmp_path,
        {"api.py": f"class Api:\n{filler}    def _strip_protocol(self, path: str) -> str: ...\n"}
        | users,
    )
    text = "from api import Api\n\n\ndef go(api: Api, where):\n    return api."
    [chunk] = dependencies(index, "main.py", text, len(text), 150)
    assert "def _strip_protocol(self, path: str) -> str" in chunk.text
    assert "method_number_59" not in chunk.text


def test_a_package_that_star_imports_exports_those_names(tmp_path: Path) -> None:
    """`pp/__init__.py` holds `from .core import *`: `pp.` lists core's names, and
    `from pp import NotAny` resolves to core's class."""
    index = _workspace(
        tmp_path,
        {
            "pp/__init__.py": "from .core import *\n",
            "pp/core.py": "class NotAny:\n    def parse(self, text: str) -> None: ...\n",
        },
    )
    text = "import pp\n\n\ndef walk(element):\n    if isinstance(element, pp."
    chunks = dependencies(index, "diagram.py", text, len(text), 1024)
    assert any(c.path == "pp/core.py" and "class NotAny" in c.text for c in chunks)
    text = "from pp import NotAny\n\n\ndef walk(element: NotAny):\n    element."
    chunks = dependencies(index, "diagram.py", text, len(text), 1024)
    assert chunks and "def parse(self, text: str) -> None" in chunks[0].text


def test_an_absolute_import_finds_the_nearest_package_of_that_name(tmp_path: Path) -> None:
    """`import pyparsing` inside a vendored copy (`tool/_vendor/pyparsing/`) is that copy,
    not another one further away in the workspace."""
    index = _workspace(
        tmp_path,
        {
            "tool/__init__.py": "",
            "tool/_vendor/pyparsing/__init__.py": "from .core import *\n",
            "tool/_vendor/pyparsing/core.py": "class Each:\n    def streamline(self): ...\n",
            "other/lib/pyparsing/__init__.py": "class Stale: ...\n",
        },
    )
    text = "import pyparsing\n\n\ndef walk(element):\n    if isinstance(element, pyparsing."
    chunks = dependencies(
        index, "tool/_vendor/pyparsing/diagram/__init__.py", text, len(text), 1024
    )
    assert any("class Each" in c.text for c in chunks)
    assert not any("Stale" in c.text for c in chunks)
