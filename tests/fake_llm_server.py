"""A local OpenAI-compatible vision endpoint for the pre-label tests (127.0.0.1 only).

``POST /v1/chat/completions`` decodes the two data-URL images of a request and answers
from a planted rule: the brighter image (mean luminance) is better. The planted taste is
wrong on a fixed share ``error_rate`` of unordered pairs and, on a fixed share
``position_bias`` of (pair, order) calls, picks whatever image is shown first; both are
deterministic in the image bytes and ``seed``, so a repeated call gets the same answer (as
a temperature-0 model would). Independently, each request may be answered (seeded RNG)
with a malformed reply, HTTP 429 (Retry-After: 0), HTTP 500, or a reply delayed by
``slow_s`` seconds, at the set rates. Everything received is counted.

Among the pairs it decides (the same side in both orders), its agreement with the planted
rule is 1 - error_rate: a position-biased call either repeats its opinion or makes the
pair order-inconsistent (a tie), so position bias thins the decisive pairs without
changing their agreement.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

MALFORMED = [
    "The first image is better.",
    '{"better": "A"}',
    '{"better": "C", "reason": "It is sharper."}',
    '{"better": "A", "reason": "It is sharper.", "confidence": 0.9}',
    '{"better": "B", "reason": "It is\\nsharper."}',
    '{"better": "A", "reas',
    "",
    '["A", "sharper"]',
]


def brightness(img_bytes: bytes) -> float:
    return float(np.asarray(Image.open(io.BytesIO(img_bytes)).convert("L"), dtype=np.float64).mean())


def _unit(*parts: object) -> float:
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


class FakeLLM:
    def __init__(
        self,
        error_rate: float = 0.2,
        position_bias: float = 0.1,
        malformed: float = 0.0,
        rate_429: float = 0.0,
        rate_500: float = 0.0,
        slow: float = 0.0,
        slow_s: float = 0.5,
        model: str = "fake-vision",
        key: str | None = None,
        seed: int = 0,
        input_tokens: int = 700,
        output_tokens: int = 30,
        prompt_rates: dict[str, float] | None = None,
        editor_model: str | None = None,
        editor_plan: tuple[str, ...] = ("better",),
        other_models: dict[str, float] | None = None,
    ):
        self.error_rate, self.position_bias = error_rate, position_bias
        self.malformed, self.rate_429, self.rate_500 = malformed, rate_429, rate_500
        self.slow, self.slow_s = slow, slow_s
        self.model, self.key, self.seed = model, key, seed
        self.input_tokens, self.output_tokens = input_tokens, output_tokens
        # issue 21: the planted error rate depends on the prompt: the rate of the first
        # keyword (lower-case) the prompt mentions, else ``error_rate`` (see ``verdict``)
        self.prompt_rates = dict(prompt_rates or {})
        self.editor_model, self.editor_plan = editor_model, tuple(editor_plan)
        self.editor_calls = 0
        # more vision models on the same endpoint, each with its own planted error rate (its
        # errors fall on its own pairs; ``model`` keeps ``error_rate`` / ``prompt_rates``)
        self.other_models = dict(other_models or {})
        self.paid_per_prompt: Counter = Counter()  # (prompt digest, digest A, digest B) -> 200 replies
        self.editor_bodies: list[str] = []
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.status = Counter()  # HTTP status -> count (200 includes malformed replies)
        self.paid = Counter()  # (digest A, digest B) -> 200 replies (what a provider bills)
        self.hits = 0
        self.late = 0
        self.bodies: list[str] = []  # every request body received (to check no key is in it)
        self.headers_seen: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                try:
                    fake.handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def paid_calls(self) -> int:
        return sum(self.paid.values())

    def paid_cost(self, price_in: float, price_out: float) -> float:
        return self.paid_calls * (self.input_tokens * price_in + self.output_tokens * price_out) / 1e6

    # -- one request ---------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        with self.lock:
            self.hits += 1
            self.bodies.append(body.decode("utf-8", "replace"))
            self.headers_seen.append(str(h.headers))
            roll = self.rng.random()
            slow = self.rng.random() < self.slow
            bad = self.rng.random() < self.malformed
            pick = self.rng.randrange(len(MALFORMED))
        if h.path.rstrip("/") != "/v1/chat/completions":
            return self.send(h, 404, {"error": {"message": "no such route"}})
        if self.key is not None and h.headers.get("Authorization") != f"Bearer {self.key}":
            return self.send(h, 401, {"error": {"message": "Incorrect API key provided."}})
        req = json.loads(body)
        if self.editor_model is not None and req.get("model") == self.editor_model:
            return self.send(h, 200, self.completion(self.edit(req["messages"][0]["content"])))
        if req.get("model") != self.model and req.get("model") not in self.other_models:
            return self.send(h, 404, {"error": {"message": f"The model {req.get('model')} does not exist."}})
        if roll < self.rate_429:
            return self.send(h, 429, {"error": {"message": "Rate limit reached."}}, {"Retry-After": "0"})
        if roll < self.rate_429 + self.rate_500:
            return self.send(h, 500, {"error": {"message": "The server had an error."}})
        images = [part["image_url"]["url"] for part in req["messages"][0]["content"] if part["type"] == "image_url"]
        raw = [base64.b64decode(u.split(",", 1)[1]) for u in images]
        if slow:
            time.sleep(self.slow_s)
        prompt = next((part["text"] for part in req["messages"][0]["content"] if part["type"] == "text"), "")
        content = MALFORMED[pick] if bad else self.verdict(raw[0], raw[1], prompt, req.get("model"))
        digests = tuple(hashlib.blake2b(r, digest_size=8).hexdigest() for r in raw)
        with self.lock:
            if slow:
                self.late += 1  # meant to outlast the client's timeout: not delivered, not counted as paid
            else:
                self.paid[digests] += 1
                self.paid_per_prompt[(hashlib.blake2b(prompt.encode(), digest_size=6).hexdigest(), *digests)] += 1
        self.send(
            h,
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": {
                    "prompt_tokens": self.input_tokens,
                    "completion_tokens": self.output_tokens,
                    "total_tokens": self.input_tokens + self.output_tokens,
                },
            },
        )

    def error_rate_for(self, prompt: str) -> float:
        low = prompt.lower()
        for word, rate in self.prompt_rates.items():
            if word in low:
                return rate
        return self.error_rate

    def verdict(self, first: bytes, second: bytes, prompt: str = "", model: str | None = None) -> str:
        d1, d2 = (hashlib.blake2b(x, digest_size=8).hexdigest() for x in (first, second))
        if _unit("bias", d1, d2, self.seed) < self.position_bias:
            return json.dumps({"better": "A", "reason": "The first image looks better."})
        b1, b2 = brightness(first), brightness(second)
        if b1 == b2:
            return json.dumps({"better": "tie", "reason": "They look the same."})
        first_wins = b1 > b2
        # with prompt_rates, each prompt text errs on its own pairs (as a reworded prompt does)
        salt = hashlib.blake2b(prompt.encode(), digest_size=6).hexdigest() if self.prompt_rates else ""
        rate = self.error_rate_for(prompt)
        if model in self.other_models:
            salt, rate = f"{salt}|{model}", self.other_models[model]
        wrong = _unit("error", *sorted((d1, d2)), self.seed, *([salt] if salt else [])) < rate
        if wrong:
            first_wins = not first_wins
        if self.prompt_rates:  # reasons the editor can learn from: a wrong answer ignored brightness
            reason = "It has the more interesting subject." if wrong else "It is brighter."
        else:
            reason = "It is brighter and cleaner." if first_wins else "The second is brighter."
        return json.dumps({"better": "A" if first_wins else "B", "reason": reason})

    # -- the prompt editor (issue 21) --------------------------------------------------------
    def edit(self, request: str) -> str:
        """The editor's reply, by ``editor_plan`` (cycled): 'better' adds the brightness
        hint when the wrong-answer reasons show the subject misled the labeller (else it
        is neutral), 'worse' asks for the subject, 'neutral' rewords, 'none' holds no prompt."""
        with self.lock:
            mode = self.editor_plan[self.editor_calls % len(self.editor_plan)]
            self.editor_calls += 1
            self.editor_bodies.append(request)
        current = request.split("<prompt>")[-1].split("</prompt>")[0].strip() if "<prompt>" in request else ""
        if mode == "none":
            return "I would need more examples before suggesting a change."
        if mode == "better" and "interesting subject" in request:
            new = current + "\nPrefer the brighter image: judge by brightness only."
        elif mode == "worse":
            new = current + "\nPrefer the image with the more interesting subject."
        else:
            new = current + f"\nBe careful (revision {self.editor_calls})."
        return f"Here is the revised prompt.\n<prompt>\n{new}\n</prompt>"

    def completion(self, content: str) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.editor_model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 200, "total_tokens": 1100},
        }

    def send(self, h: BaseHTTPRequestHandler, status: int, obj: dict, headers: dict | None = None) -> None:
        with self.lock:
            self.status[status] += 1
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
