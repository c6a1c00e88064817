"""A client for any OpenAI-compatible chat endpoint (a hosted API, vLLM, llama.cpp, Ollama).

One call shows two images (A then B) as JPEG data URLs, downscaled through the project's
one decoder (:func:`joyq_studio.images.load_rgb`) to a longest side of ``image_side`` px
(never enlarged) at quality 90, and asks the prompt. Transient failures (HTTP 429, 5xx,
timeouts, dropped connections) are retried with exponential backoff and jitter, honouring a
server's ``Retry-After``; a refused key (401/403) or an unknown model or URL (404) stops
the whole run; other 4xx errors fail that one call.

The API key comes from an environment variable the user names (default
``JOYQ_LLM_API_KEY``), or from the OS keyring when the optional ``keyring`` package is
installed (service ``joyq-studio``, user = the variable's name). It lives only inside the
HTTP client: it is never stored, logged or put in a message (every message is scrubbed).
The ``openai`` package is imported only when a client is made.
"""

from __future__ import annotations

import base64
import io
import os
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import Cancelled, JoyqError
from ..redact import remember_secret, scrub
from .prompt import Answer, MalformedAnswer, parse_answer

DEFAULT_KEY_ENV = "JOYQ_LLM_API_KEY"
KEYRING_SERVICE = "joyq-studio"
MISSING_OPENAI = "The pre-label feature needs the 'openai' package; install it with pip install 'joyq-studio[llm]'."
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class LLMError(JoyqError):
    """The LLM endpoint cannot be used; one sentence naming the endpoint and the problem."""


class CallFailed(LLMError):
    """One call failed after its retries (``fatal``: every further call would fail too)."""

    def __init__(self, message: str, fatal: bool = False, status: int | None = None):
        super().__init__(message)
        self.fatal = fatal
        self.status = status


@dataclass(frozen=True)
class EndpointConfig:
    base_url: str  # e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1
    model: str
    key_env: str = DEFAULT_KEY_ENV  # the *name* of the environment variable holding the key
    timeout: float = 60.0  # seconds per request
    retries: int = 4  # extra attempts on 429 / 5xx / timeouts
    backoff: float = 1.0  # first retry wait (s); doubles, with jitter, capped at max_backoff
    max_backoff: float = 30.0
    concurrency: int = 4  # requests in flight at once
    image_side: int = 768  # longest side sent, px
    jpeg_quality: int = 90
    json_mode: bool = True  # ask for response_format json_object
    temperature: float | None = 0.0  # None: not sent (some reasoning models refuse it)
    max_tokens: int | None = 300  # None: not sent

    def check(self) -> EndpointConfig:
        """Raise LLMError naming the first bad setting."""
        if not re.match(r"https?://[^\s/]+", self.base_url or ""):
            raise LLMError(f"The endpoint URL {self.base_url!r} must start with http:// or https://.")
        if not (self.model or "").strip():
            raise LLMError("The model name is empty; name the endpoint's vision model (e.g. gpt-4o-mini).")
        if not _ENV_NAME.fullmatch(self.key_env or ""):
            # Do not echo it: a user may have pasted the key itself here.
            raise LLMError(
                "The API key setting must name an environment variable (like JOYQ_LLM_API_KEY), "
                "not hold the key itself."
            )
        if not 64 <= self.image_side <= 2048:
            raise LLMError(f"The image size {self.image_side} px is outside 64-2048 px (512-1024 is usual).")
        if not 1 <= self.concurrency <= 64:
            raise LLMError(f"The concurrency {self.concurrency} is outside 1-64 requests at once.")
        if not self.timeout > 0:
            raise LLMError(f"The request timeout {self.timeout} s must be more than 0.")
        if not 0 <= self.retries <= 20:
            raise LLMError(f"The retry count {self.retries} is outside 0-20.")
        return self


def resolve_api_key(env_name: str = DEFAULT_KEY_ENV) -> str | None:
    """The key from the environment variable ``env_name``, else the OS keyring (if the
    ``keyring`` package is installed), else None (fine for a local server)."""
    value = os.environ.get(env_name, "").strip()
    if value:
        remember_secret(value)
        return value
    try:
        import keyring  # optional
    except ImportError:
        return None
    try:
        value = (keyring.get_password(KEYRING_SERVICE, env_name) or "").strip()
    except Exception:  # noqa: BLE001 - no usable keyring backend: same as no key
        return None
    remember_secret(value)
    return value or None


NO_KEYRING = (
    "Saving the API key needs the OS keyring through the 'keyring' package (pip install keyring); "
    "without it, put the key in the environment variable {env} instead (the app never writes it to a file)."
)


def _keyring(env_name: str):
    """The ``keyring`` module (imported only here); LLMError naming what to do when absent."""
    if not _ENV_NAME.fullmatch(env_name or ""):
        raise LLMError(
            "The API key setting must name an environment variable (like JOYQ_LLM_API_KEY), not hold the key itself."
        )
    try:
        import keyring  # optional
    except ImportError:
        raise LLMError(NO_KEYRING.format(env=env_name)) from None
    return keyring


def save_api_key(key: str, env_name: str = DEFAULT_KEY_ENV) -> None:
    """Put ``key`` in the OS keyring (service ``joyq-studio``, user ``env_name``), where
    :func:`resolve_api_key` finds it; never in a file of ours. LLMError when it cannot."""
    key = (key or "").strip()
    if not key:
        raise LLMError("The API key is empty; nothing was saved.")
    keyring = _keyring(env_name)
    remember_secret(key)
    try:
        keyring.set_password(KEYRING_SERVICE, env_name, key)
    except Exception as e:  # noqa: BLE001 - any backend failure (none usable, locked, refused)
        raise LLMError(
            scrub(
                f"The OS keyring did not take the API key ({type(e).__name__}: {e}); nothing was saved, "
                f"put the key in the environment variable {env_name} instead.",
                key,
            )
        ) from None


def remove_api_key(env_name: str = DEFAULT_KEY_ENV) -> bool:
    """Remove the key saved for ``env_name`` from the OS keyring; False when none was saved."""
    keyring = _keyring(env_name)
    try:
        if keyring.get_password(KEYRING_SERVICE, env_name) is None:
            return False
        keyring.delete_password(KEYRING_SERVICE, env_name)
    except Exception as e:  # noqa: BLE001 - any backend failure
        raise LLMError(scrub(f"The OS keyring could not remove the API key ({type(e).__name__}: {e}).")) from None
    return True


# -- images ------------------------------------------------------------------------------
class _ImageCache:
    """Encoded data URLs of the last images sent (each image goes in both orders)."""

    def __init__(self, size: int = 128):
        self.size, self.lock = size, threading.Lock()
        self.items: OrderedDict[tuple, str] = OrderedDict()

    def get(self, key, make: Callable[[], str]) -> str:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


def encode_image(path: str | os.PathLike, longest_side: int = 768, quality: int = 90) -> str:
    """A file as a JPEG data URL, decoded by the project's decoder and downscaled so its
    longest side is at most ``longest_side`` (never enlarged); raises ImageError."""
    from PIL import Image

    from ..images import (
        load_rgb,  # the one decoder (EXIF orientation, first frame, alpha on grey)
    )

    img = load_rgb(path)
    if max(img.size) > longest_side:
        scale = longest_side / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS
        )
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# -- calls -------------------------------------------------------------------------------
@dataclass
class CallOutcome:
    """A reply that arrived (and so was paid for): ``answer`` set, or ``error`` when malformed."""

    answer: Answer | None
    error: str | None = None  # why the reply is malformed
    raw: str | None = None  # start of a malformed reply, scrubbed
    input_tokens: int | None = None  # as the server reported them
    output_tokens: int | None = None
    attempts: int = 1
    retried: list[str] = field(default_factory=list)  # why each earlier attempt failed


class LLMClient:
    """Thread-safe: ``judge`` may run on several worker threads at once."""

    def __init__(self, config: EndpointConfig, api_key: str | None = None, sleep: Callable[[float], None] = time.sleep):
        self.config = config.check()
        try:
            import openai
        except ImportError:
            raise LLMError(MISSING_OPENAI) from None
        self._openai = openai
        key = api_key if api_key is not None else resolve_api_key(config.key_env)
        self._secret = key or ""
        remember_secret(key)  # every text scrubbed in this process blanks it from now on
        self.has_key = bool(key)
        # A local server needs no key, but the client insists on one.
        self._client = openai.OpenAI(
            base_url=config.base_url, api_key=key or "no-key", max_retries=0, timeout=config.timeout
        )
        self._images = _ImageCache()
        self._sleep = sleep
        self._rng = random.Random()

    @property
    def model(self) -> str:
        return self.config.model

    def close(self) -> None:
        self._client.close()

    def scrub(self, text: str) -> str:
        """Text with the API key, every other key in use and anything credential-shaped blanked out."""
        return scrub(text, self._secret)

    def image_url(self, path: str | os.PathLike) -> str:
        try:
            st = os.stat(path)
            key = (os.fspath(path), st.st_size, st.st_mtime_ns, self.config.image_side, self.config.jpeg_quality)
        except OSError:
            key = None
        make = lambda: encode_image(path, self.config.image_side, self.config.jpeg_quality)
        return make() if key is None else self._images.get(key, make)

    def messages(self, prompt_text: str, first_url: str, second_url: str) -> list[dict]:
        """One user message: the prompt, then 'Image A:' + A, then 'Image B:' + B."""
        return [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt_text},
                    {"type": "text", "text": "Image A:"},
                    {"type": "image_url", "image_url": {"url": first_url}},
                    {"type": "text", "text": "Image B:"},
                    {"type": "image_url", "image_url": {"url": second_url}},
                ],
            }
        ]

    def judge(
        self,
        first: str | os.PathLike,
        second: str | os.PathLike,
        prompt_text: str,
        cancel: Callable[[], bool] | None = None,
    ) -> CallOutcome:
        """Ask which of two image files is better (``first`` shown as A).

        Returns a CallOutcome for any reply (a malformed one included: it was paid for).
        Raises ImageError if a file cannot be decoded, CallFailed when the retries run out
        or the failure is not transient, Cancelled if ``cancel`` turns true before a retry.
        """
        cfg = self.config
        messages = self.messages(prompt_text, self.image_url(first), self.image_url(second))
        kwargs: dict = {}
        if cfg.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        if cfg.temperature is not None:
            kwargs["temperature"] = cfg.temperature
        if cfg.max_tokens is not None:
            kwargs["max_tokens"] = cfg.max_tokens
        retried: list[str] = []
        resp, attempts = self._create(messages, kwargs, cancel, retried)
        return self._outcome(resp, attempts, retried)

    def _create(self, messages: list, kwargs: dict, cancel: Callable[[], bool] | None, retried: list[str]):
        """One chat completion with the retries, waits and classification every call shares:
        (response, attempts); the reasons of retried attempts (scrubbed) go into ``retried``."""
        cfg = self.config
        for attempt in range(cfg.retries + 1):
            if cancel and cancel():
                raise Cancelled()
            try:
                resp = self._client.chat.completions.create(model=cfg.model, messages=messages, **kwargs)
            except Exception as e:  # noqa: BLE001 - classified below
                why, wait, fatal, status = self._classify(e)
                if fatal is not None:
                    raise CallFailed(self.scrub(why), fatal=fatal, status=status) from None
                retried.append(self.scrub(why))
                if attempt == cfg.retries:
                    raise CallFailed(
                        self.scrub(f"{cfg.base_url}: {why} after {attempt + 1} attempts."), status=status
                    ) from None
                self._wait(wait if wait is not None else self._backoff(attempt), cancel)
                continue
            return resp, attempt + 1
        raise AssertionError("unreachable")

    def complete(
        self, text: str, cancel: Callable[[], bool] | None = None, max_tokens: int | None = 2000
    ) -> tuple[str, int | None, int | None]:
        """A text-only call (the prompt editor's): (reply text, input tokens, output tokens as
        reported). Same retries, classification and scrubbing as :meth:`judge`; raises
        CallFailed / Cancelled as it does."""
        cfg = self.config
        kwargs: dict = {}
        if cfg.temperature is not None:
            kwargs["temperature"] = cfg.temperature
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        messages = [{"role": "user", "content": text}]
        resp, _ = self._create(messages, kwargs, cancel, [])
        usage = getattr(resp, "usage", None)
        try:
            content = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            content = ""
        return (
            self.scrub(str(content)),
            getattr(usage, "prompt_tokens", None) if usage else None,
            getattr(usage, "completion_tokens", None) if usage else None,
        )

    # -- helpers ---------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        base = min(self.config.max_backoff, self.config.backoff * (2**attempt))
        return base * (0.5 + self._rng.random())  # jitter: 0.5x-1.5x

    def _wait(self, seconds: float, cancel: Callable[[], bool] | None) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if cancel and cancel():
                raise Cancelled()
            self._sleep(min(left, 0.1))

    def _classify(self, e: Exception) -> tuple[str, float | None, bool | None, int | None]:
        """(why, wait before retry or None for backoff, fatal: None = retry / False / True, status)."""
        o, cfg = self._openai, self.config
        url = cfg.base_url
        if isinstance(e, o.APITimeoutError):
            return f"no reply within {cfg.timeout:g} s", None, None, None
        if isinstance(e, o.APIConnectionError):
            return "the connection failed", None, None, None
        if isinstance(e, o.APIStatusError):
            status = e.status_code
            if status == 429 or status >= 500 or status in (408, 409):
                return f"HTTP {status}", _retry_after(e, cfg.max_backoff), None, status
            detail = _server_message(e, self.scrub)
            if status in (401, 403):
                return (
                    (
                        f"{url}: the endpoint refused the API key (HTTP {status}); put a valid key in the "
                        f"environment variable {cfg.key_env}."
                    ),
                    None,
                    True,
                    status,
                )
            if status == 404:
                return (
                    (
                        f"{url}: the model {cfg.model!r} or the URL was not found (HTTP 404{detail}); "
                        "check the endpoint URL (it usually ends in /v1) and the model name."
                    ),
                    None,
                    True,
                    status,
                )
            return (f"{url}: the endpoint rejected the request (HTTP {status}{detail})."), None, False, status
        return f"{url}: the request failed ({type(e).__name__}: {self.scrub(str(e))[:200]}).", None, False, None

    def _outcome(self, resp, attempts: int, retried: list[str]) -> CallOutcome:
        usage = getattr(resp, "usage", None)
        inp = getattr(usage, "prompt_tokens", None) if usage else None
        out = getattr(usage, "completion_tokens", None) if usage else None
        outcome = CallOutcome(None, input_tokens=inp, output_tokens=out, attempts=attempts, retried=retried)
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            outcome.error = "The reply holds no message."
            return outcome
        try:
            answer = parse_answer(content)
            outcome.answer = Answer(answer.better, self.scrub(answer.reason))
        except MalformedAnswer as m:
            outcome.error = self.scrub(str(m))
            outcome.raw = self.scrub(str(content or ""))[:300]
        return outcome


def _retry_after(e, cap: float) -> float | None:
    try:
        value = e.response.headers.get("retry-after")
        return None if value is None else min(cap, max(0.0, float(value)))
    except (AttributeError, TypeError, ValueError):
        return None


def _server_message(e, clean: Callable[[str], str]) -> str:
    """': <the server's own message>' (short), or ''."""
    try:
        body = e.body
        msg = body.get("message") if isinstance(body, dict) else None
        if msg is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
            msg = body["error"].get("message")
    except AttributeError:
        msg = None
    if not isinstance(msg, str) or not msg.strip():
        return ""
    msg = " ".join(clean(msg).split())  # scrubbed before it is cut: half a key would not match
    return ": " + (msg[:160].rstrip(".") + ("..." if len(msg) > 160 else ""))
