"""Scrub secrets out of any text before it is stored, printed or logged.

Some servers (proxies, gateways) repeat the request's API key in their error and reply
bodies, so every text that comes back from a server passes through :func:`scrub` before it
reaches the project database, a message or a log. It blanks

* every key in use: :func:`remember_secret` is called wherever a key is read (the
  labeller's, an editor model's...), and the keys live only in this process's memory;
* anything shaped like a credential: ``Bearer <token>``, ``sk-...`` keys, and long
  base64/hex runs right after a word like key, token, secret or password.

Scrub *before* cutting a text short: a key cut in half no longer matches.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
MIN_SECRET = 4  # shorter "keys" (e.g. "no") would blank ordinary words

_secrets: set[str] = set()
_lock = threading.Lock()

_PATTERNS = [
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{MASK}"),
    # OpenAI-style keys: sk-..., sk-proj-..., and similar prefixed keys
    (re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{8,}"), rf"\1-{MASK}"),
    # key=..., "api_key": "...", token: ... followed by a long base64/hex run
    (
        re.compile(
            r"(?i)((?:api[_-]?)?key|token|secret|password|passwd|authorization|credential)s?"
            r"([\"']?\s*[:=]?\s*[\"']?\s*)([A-Za-z0-9+/_.~-]{16,}={0,2})"
        ),
        rf"\1\2{MASK}",
    ),
]


def remember_secret(secret: str | None) -> None:
    """Blank ``secret`` (a key just read) in every text scrubbed from now on in this process."""
    if secret and len(secret.strip()) >= MIN_SECRET:
        with _lock:
            _secrets.add(secret.strip())


def forget_secrets() -> None:
    """Drop every remembered key (tests; a key removed from the keyring)."""
    with _lock:
        _secrets.clear()


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every remembered key, the ``secrets`` given and anything credential-shaped
    replaced by ``***``."""
    if not text:
        return text
    with _lock:
        known = set(_secrets)
    known.update(s.strip() for s in secrets if s and len(s.strip()) >= MIN_SECRET)
    for secret in sorted(known, key=len, reverse=True):  # a longer key first: it may contain a shorter one
        text = text.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def scrub_optional(text: str | None) -> str | None:
    return None if text is None else scrub(text)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line (message, arguments, traceback) is scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
