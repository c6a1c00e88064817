"""Prompt versions kept in the project (table ``prompt_versions``, issue 21).

Each row is one prompt text (with its hash, the llm_* tables' key), the prompt it was
edited from, the optimisation round that made it, its agreement with an interval on the
pairs it was measured on, and what measuring it cost. `joyq prelabel prompts` lists
them; `joyq prelabel run --prompt ID` labels with one. A prompt is plain text: it is sent
as it is, nothing in it is expanded or run (there are no placeholders).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import JoyqError
from ..store import Project
from .prompt import Prompt, normalize_prompt, prompt_hash

_COLS = "id, hash, text, parent, round, model, agree, n, low, high, cost, note, run, created"


@dataclass(frozen=True)
class PromptVersion:
    id: int
    hash: str
    text: str
    parent: int | None
    round: int | None
    model: str | None
    agree: float | None  # agreement points (LLM ties count half) ...
    n: int | None  # ... over n decisive pairs
    low: float | None
    high: float | None
    cost: float
    note: str | None
    run: str | None
    created: float

    @property
    def agreement(self) -> float | None:
        return self.agree / self.n if self.agree is not None and self.n else None

    @property
    def usable(self) -> bool:
        return self.hash != "-"

    def prompt(self) -> Prompt:
        return Prompt(self.text)


def add_version(
    project: Project,
    text: str,
    *,
    parent: int | None = None,
    round: int | None = None,
    model: str | None = None,
    note: str | None = None,
    run: str | None = None,
    usable: bool = True,
    cost: float = 0.0,
) -> PromptVersion:
    """Store a prompt (``usable`` False: an editor reply with no prompt, kept for the record)."""
    text = normalize_prompt(text) if usable else text
    digest = prompt_hash(text) if usable else "-"
    with project.transaction():
        cur = project.db.execute(
            "INSERT INTO prompt_versions(hash, text, parent, round, model, note, run, cost, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (digest, text, parent, round, model, note, run, float(cost), time.time()),
        )
    got = version(project, int(cur.lastrowid or 0))
    assert got is not None
    return got


def set_score(project: Project, version_id: int, agree: float, n: int, low: float, high: float, cost: float) -> None:
    with project.transaction():
        project.db.execute(
            "UPDATE prompt_versions SET agree = ?, n = ?, low = ?, high = ?, cost = ? WHERE id = ?",
            (agree, n, low, high, cost, version_id),
        )


def set_note(project: Project, version_id: int, note: str) -> None:
    with project.transaction():
        project.db.execute("UPDATE prompt_versions SET note = ? WHERE id = ?", (note, version_id))


def version(project: Project, version_id: int) -> PromptVersion | None:
    row = project.db.execute(f"SELECT {_COLS} FROM prompt_versions WHERE id = ?", (version_id,)).fetchone()
    return PromptVersion(*row) if row else None


def versions(project: Project, run: str | None = None) -> list[PromptVersion]:
    sql = f"SELECT {_COLS} FROM prompt_versions" + (" WHERE run = ?" if run else "") + " ORDER BY id"
    return [PromptVersion(*r) for r in project.db.execute(sql, (run,) if run else ())]


def load_version(project: Project, version_id: int) -> Prompt:
    """The prompt stored as ``version_id``; JoyqError naming the problem otherwise."""
    v = version(project, version_id)
    if v is None:
        raise JoyqError(f"{project.folder}: has no prompt {version_id}; `joyq prelabel prompts` lists them.")
    if not v.usable:
        raise JoyqError(f"Prompt {version_id} is an editor reply that held no prompt; choose another.")
    return v.prompt()
