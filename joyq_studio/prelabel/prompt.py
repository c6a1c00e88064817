"""The question asked of the LLM, versioned by its hash, and the strict parser of its answer.

The prompt asks for overall technical and aesthetic quality and tells the model to ignore
what the pictures show, as the JoyQuality author's labelling prompt did. The user may edit
it; every label and cached answer records the 12-hex-digit hash of the exact text used, so
answers to different prompts are never mixed.

The answer must be one JSON object ``{"better": "A" | "B" | "tie", "reason": "..."}``.
Anything else (prose, extra keys, another verdict, a missing or multi-line reason, a
truncated reply) is a *malformed* answer: a failed call, never a label.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import JoyqError

DEFAULT_PROMPT = """\
You compare the overall quality of two images: Image A (shown first) and Image B (shown second).

Judge only technical and aesthetic quality: sharpness and focus, exposure and dynamic range, \
noise, compression artefacts, colour, lighting, composition and overall visual appeal. \
Ignore what the images show: their subject, content, style and genre must not affect your \
choice, and neither must the order in which they are shown.

Reply with one JSON object and nothing else, exactly in this form:
{"better": "A", "reason": "One short sentence."}
where "better" is "A" if Image A has the higher quality, "B" if Image B has, or "tie" only \
if you truly cannot tell them apart, and "reason" is one sentence naming the deciding \
quality difference.
"""

VERDICTS = ("A", "B", "tie")
MAX_REASON_CHARS = 400
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)\s*```", re.DOTALL)


class MalformedAnswer(JoyqError):
    """The endpoint replied, but not with exactly one valid JSON verdict."""


@dataclass(frozen=True)
class Answer:
    better: str  # 'A' (the first image shown), 'B' (the second) or 'tie'
    reason: str  # one sentence


@dataclass(frozen=True)
class Prompt:
    text: str

    @property
    def hash(self) -> str:
        return prompt_hash(self.text)


def normalize_prompt(text: str) -> str:
    """Line endings unified and outer whitespace dropped, so a re-saved file keeps its hash."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip() + "\n"


def prompt_hash(text: str) -> str:
    """The prompt's version: blake2b-48 of its normalised UTF-8 text, 12 hex digits."""
    return hashlib.blake2b(normalize_prompt(text).encode("utf-8"), digest_size=6).hexdigest()


def default_prompt() -> Prompt:
    return Prompt(normalize_prompt(DEFAULT_PROMPT))


def load_prompt(path: str | os.PathLike | None) -> Prompt:
    """The prompt in a UTF-8 text file, or the built-in one when ``path`` is None."""
    if path is None:
        return default_prompt()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise JoyqError(f"{p}: the prompt file is not UTF-8 text.") from None
    except OSError as e:
        raise JoyqError(f"{p}: the prompt file cannot be read ({e.strerror or e}).") from None
    if not text.strip():
        raise JoyqError(f"{p}: the prompt file is empty.")
    return Prompt(normalize_prompt(text))


def parse_answer(text: str | None) -> Answer:
    """The verdict in a reply, parsed strictly; raises MalformedAnswer for anything else.

    Accepted: one JSON object with exactly the keys ``better`` ("A", "B" or "tie", any
    letter case) and ``reason`` (a non-empty single-line string of at most 400 characters),
    optionally inside one Markdown code fence.
    """
    if not isinstance(text, str) or not text.strip():
        raise MalformedAnswer("The reply is empty.")
    body = text.strip()
    fence = _FENCE.fullmatch(body)
    if fence:
        body = fence.group(1)
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        raise MalformedAnswer("The reply is not one JSON object.") from None
    if not isinstance(obj, dict):
        raise MalformedAnswer("The reply is JSON but not an object.")
    if set(obj) != {"better", "reason"}:
        raise MalformedAnswer(f"The reply has the keys {sorted(obj)}, not exactly 'better' and 'reason'.")
    better, reason = obj["better"], obj["reason"]
    if not isinstance(better, str) or better.strip().lower() not in ("a", "b", "tie"):
        raise MalformedAnswer(f'The reply\'s \'better\' is {json.dumps(better)[:40]}, not "A", "B" or "tie".')
    if not isinstance(reason, str) or not reason.strip():
        raise MalformedAnswer("The reply's 'reason' is missing or empty.")
    reason = reason.strip()
    if "\n" in reason or len(reason) > MAX_REASON_CHARS:
        raise MalformedAnswer("The reply's 'reason' is not one short sentence.")
    verdict = better.strip().lower()
    return Answer("tie" if verdict == "tie" else verdict.upper(), reason)
