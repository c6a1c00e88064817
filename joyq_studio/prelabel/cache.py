"""The project's LLM tables: every paid answer, the prompts used, and the planned pairs.

``llm_answers`` holds one row per (first image, second image, model, prompt hash): the
pair *and* the order it was shown in. A reply is written the moment it arrives, in its own
transaction, so a run stopped at any point has paid only for what is stored, and a rerun
asks only for what is missing. Malformed replies are stored too (status 'malformed'):
they were paid for and are not asked again.

``llm_plan`` keeps the pairs a ``run`` chose, so a killed run resumes the same pairs.
``llm_prompts`` keeps each prompt's text under its hash, so a label's source can be read.
No API key or endpoint URL is ever written here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..redact import scrub_optional
from ..store import Project

SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_prompts (
    hash TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS llm_answers (
    first TEXT NOT NULL,               -- content hash of the image shown as A
    second TEXT NOT NULL,              -- ... shown as B
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,              -- prompt hash
    status TEXT NOT NULL,              -- 'ok' or 'malformed'
    better TEXT,                       -- 'A', 'B' or 'tie' when ok
    reason TEXT,                       -- the one-sentence reason (ok) or why it is malformed
    raw TEXT,                          -- start of a malformed reply
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost REAL NOT NULL DEFAULT 0,      -- USD at the prices of the run that paid it
    created REAL NOT NULL,
    PRIMARY KEY (first, second, model, prompt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS llm_plan (
    source TEXT NOT NULL,              -- 'llm:MODEL:PROMPTHASH'
    seq INTEGER NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    kind TEXT NOT NULL,                -- 'near', 'random' or 'model'
    state TEXT NOT NULL DEFAULT 'pending',   -- 'pending', 'labelled' or 'failed'
    comparison INTEGER,                -- the comparison's id once labelled
    PRIMARY KEY (source, seq)
);
"""


@dataclass(frozen=True)
class CachedAnswer:
    first: str
    second: str
    status: str  # 'ok' or 'malformed'
    better: str | None  # 'A', 'B', 'tie'
    reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def ensure_tables(project: Project) -> None:
    """Create the LLM tables if missing (idempotent, one transaction)."""
    with project.transaction():
        for statement in SCHEMA.split(";"):
            if statement.strip():
                project.db.execute(statement)


def source_name(model: str, prompt_hash: str) -> str:
    """How a label records who judged it: ``llm:MODEL:PROMPTHASH``."""
    return f"llm:{model}:{prompt_hash}"


def parse_source(source: str | None) -> tuple[str, str] | None:
    """(model, prompt hash) of an LLM source, else None (the model name may hold ':')."""
    if not source or not source.startswith("llm:"):
        return None
    model, _, ph = source[4:].rpartition(":")
    return (model, ph) if model and ph else None


def remember_prompt(project: Project, prompt_hash: str, text: str) -> None:
    with project.transaction():
        project.db.execute(
            "INSERT OR IGNORE INTO llm_prompts(hash, text, created) VALUES (?, ?, ?)", (prompt_hash, text, time.time())
        )


def prompt_text(project: Project, prompt_hash: str) -> str | None:
    row = project.db.execute("SELECT text FROM llm_prompts WHERE hash = ?", (prompt_hash,)).fetchone()
    return row[0] if row else None


_COLS = "first, second, status, better, reason, input_tokens, output_tokens, cost"


def answers_for(
    project: Project, model: str, prompt_hash: str, keys: Iterable[tuple[str, str]] | None = None
) -> dict[tuple[str, str], CachedAnswer]:
    """Cached answers keyed by (first, second): all of them, or those among ``keys``."""
    sql = f"SELECT {_COLS} FROM llm_answers WHERE model = ? AND prompt = ?"
    if keys is None:
        rows = project.db.execute(sql, (model, prompt_hash)).fetchall()
    else:
        wanted = set(keys)
        firsts = sorted({f for f, _ in wanted})
        rows = []
        for i in range(0, len(firsts), 900):
            chunk = firsts[i : i + 900]
            rows += project.db.execute(
                sql + f" AND first IN ({','.join('?' * len(chunk))})", (model, prompt_hash, *chunk)
            ).fetchall()
        rows = [r for r in rows if (r[0], r[1]) in wanted]
    return {(r[0], r[1]): CachedAnswer(*r) for r in rows}


def put_answer(
    project: Project,
    model: str,
    prompt_hash: str,
    first: str,
    second: str,
    *,
    status: str,
    better: str | None,
    reason: str | None,
    raw: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cost: float,
) -> CachedAnswer:
    """Store one reply (call inside ``project.transaction()`` to group it with a label).
    ``reason`` and ``raw`` came from a server: they are scrubbed of keys here, at the door."""
    reason, raw = scrub_optional(reason), scrub_optional(raw)
    with project.transaction():
        project.db.execute(
            "INSERT OR REPLACE INTO llm_answers(first, second, model, prompt, status, better, reason, raw,"
            " input_tokens, output_tokens, cost, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                first,
                second,
                model,
                prompt_hash,
                status,
                better,
                reason,
                raw,
                input_tokens,
                output_tokens,
                float(cost),
                time.time(),
            ),
        )
    return CachedAnswer(first, second, status, better, reason, input_tokens, output_tokens, float(cost))


def measured_tokens(project: Project, model: str, prompt_hash: str) -> tuple[float, float, int] | None:
    """(mean input tokens, mean output tokens, calls) the server reported for this model
    and prompt, or None before any reply reported its usage."""
    row = project.db.execute(
        "SELECT AVG(input_tokens), AVG(COALESCE(output_tokens, 0)), COUNT(*) FROM llm_answers "
        "WHERE model = ? AND prompt = ? AND input_tokens IS NOT NULL",
        (model, prompt_hash),
    ).fetchone()
    return (float(row[0]), float(row[1]), int(row[2])) if row and row[2] else None


def total_spent(project: Project, model: str | None = None) -> tuple[float, int]:
    """(USD, calls) paid so far in this project (for one model, or all)."""
    if model is None:
        row = project.db.execute("SELECT COALESCE(SUM(cost), 0), COUNT(*) FROM llm_answers").fetchone()
    else:
        row = project.db.execute(
            "SELECT COALESCE(SUM(cost), 0), COUNT(*) FROM llm_answers WHERE model = ?", (model,)
        ).fetchone()
    return float(row[0]), int(row[1])


# -- the plan of a run ---------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedPair:
    seq: int
    a: str
    b: str
    kind: str


def pending_plan(project: Project, source: str) -> list[PlannedPair]:
    rows = project.db.execute(
        "SELECT seq, a, b, kind FROM llm_plan WHERE source = ? AND state = 'pending' ORDER BY seq", (source,)
    ).fetchall()
    return [PlannedPair(*r) for r in rows]


def planned_keys(project: Project, source: str) -> set[frozenset]:
    """Every pair this source has planned (any state), order-free."""
    return {frozenset(r) for r in project.db.execute("SELECT a, b FROM llm_plan WHERE source = ?", (source,))}


def add_plan(project: Project, source: str, pairs: Iterable[tuple[str, str, str]]) -> list[PlannedPair]:
    with project.transaction():
        start = (
            project.db.execute("SELECT COALESCE(MAX(seq), 0) FROM llm_plan WHERE source = ?", (source,)).fetchone()[0]
            + 1
        )
        planned = [PlannedPair(start + i, a, b, kind) for i, (a, b, kind) in enumerate(pairs)]
        project.db.executemany(
            "INSERT INTO llm_plan(source, seq, a, b, kind) VALUES (?, ?, ?, ?, ?)",
            ((source, p.seq, p.a, p.b, p.kind) for p in planned),
        )
    return planned


def finish_planned(project: Project, source: str, seq: int, state: str, comparison: int | None) -> None:
    with project.transaction():
        project.db.execute(
            "UPDATE llm_plan SET state = ?, comparison = ? WHERE source = ? AND seq = ?",
            (state, comparison, source, seq),
        )


def discard_pending(project: Project, source: str) -> int:
    """Forget the unfinished pairs of an earlier run (their cached answers stay)."""
    with project.transaction():
        cur = project.db.execute("DELETE FROM llm_plan WHERE source = ? AND state = 'pending'", (source,))
    return cur.rowcount


def plan_counts(project: Project, source: str) -> dict[str, int]:
    return dict(
        project.db.execute("SELECT state, COUNT(*) FROM llm_plan WHERE source = ? GROUP BY state", (source,)).fetchall()
    )
