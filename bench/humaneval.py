"""HumanEval as fill-in-the-middle tasks, and running a filled-in solution's tests.

Each of the 164 problems (prompt + canonical solution) gives one task of each kind, at a
place chosen by a fixed random draw per problem:
  line-start  the cursor right after a line's indentation, the rest of the line removed:
              the user starts a line;
  mid-line    the cursor about a third into a line's code, the rest removed;
  block       the cursor on an empty line (indentation typed, as an editor leaves it
              after Enter) where the rest of a block was: the rest of the block expected.
Problems with an even index form the tuning half, odd ones the held-out half.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

KINDS = ("line-start", "mid-line", "block")
# Blocks longer than this are not asked for: 48 generated tokens could not write them.
_BLOCK_MAX_LINES = 5
_BLOCK_MAX_CHARS = 160


class Problem(msgspec.Struct, frozen=True):
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


class Task(msgspec.Struct, frozen=True):
    id: str  # "HumanEval/12 mid-line"
    problem: int  # index in HumanEval
    kind: str
    half: str  # "tuning" or "held-out"
    prefix: str  # the document up to the cursor
    suffix: str  # from the cursor on
    expected: str  # what belongs at the cursor (a line's rest, or a block's rest)
    line: int  # the cursor, 0-based
    character: int  # in characters (ASCII: also UTF-16 units)


def load_problems(path: Path) -> list[Problem]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [msgspec.convert(json.loads(line), Problem) for line in f if line.strip()]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def tasks_of(index: int, p: Problem) -> list[Task]:
    text = p.prompt + p.canonical_solution
    lines = text.split("\n")
    first = p.prompt.count("\n")  # the first line of the solution
    body = [i for i in range(first, len(lines)) if lines[i].strip()]
    rng = random.Random(p.task_id)
    half = "tuning" if index % 2 == 0 else "held-out"
    out: list[Task] = []

    def make(kind: str, line: int, col: int, removed_to: int, expected: str) -> Task:
        """The document with lines[line][col:] up to the end of lines[removed_to] gone."""
        before = "\n".join(lines[:line]) + ("\n" if line else "") + lines[line][:col]
        after_lines = lines[removed_to + 1 :]
        suffix = "\n" + "\n".join(after_lines) if after_lines else ""
        return Task(f"{p.task_id} {kind}", index, kind, half, before, suffix, expected, line, col)

    if body:
        i = rng.choice(body)
        out.append(make("line-start", i, _indent(lines[i]), i, lines[i].strip()))
    long_lines = [i for i in body if len(lines[i].strip()) >= 8]
    if long_lines:
        i = rng.choice(long_lines)
        ind = _indent(lines[i])
        col = ind + max(1, len(lines[i].strip()) // 3)
        out.append(make("mid-line", i, col, i, lines[i][col:].rstrip()))
    blocks = []
    for i in body:
        ind = _indent(lines[i])
        end = i
        while end + 1 < len(lines) and (
            not lines[end + 1].strip() or _indent(lines[end + 1]) >= ind
        ):
            end += 1
        while end > i and not lines[end].strip():
            end -= 1
        rest = "\n".join(lines[i : end + 1])
        if end > i and end - i < _BLOCK_MAX_LINES and len(rest) <= _BLOCK_MAX_CHARS:
            blocks.append((i, end))
    if blocks:
        i, end = rng.choice(blocks)
        ind = _indent(lines[i])
        # The cursor after the indentation an editor leaves on the line after Enter.
        out.append(make("block", i, ind, end, "\n".join(lines[i : end + 1])[ind:]))
    return out


def all_tasks(problems: list[Problem]) -> list[Task]:
    return [t for i, p in enumerate(problems) for t in tasks_of(i, p)]


def filled(task: Task, completion: str) -> str:
    """The document with `completion` at the cursor."""
    return task.prefix + completion + task.suffix


def passes(problem: Problem, program: str, timeout: float = 10.0) -> bool:
    """Whether `program` (a filled-in solution) passes the problem's tests, run by a
    separate Python with a time limit."""
    check = f"{program}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
    with tempfile.TemporaryDirectory(prefix="humaneval-") as tmp:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", check],
                cwd=tmp,
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0
