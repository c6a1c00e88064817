"""What a call costs: tokens per image x price, estimated before a run and measured after.

An estimate is ``input_tokens x input price + output_tokens x output price`` per call, with
``input_tokens = 2 x tokens_per_image + prompt tokens``. Providers count image tokens
differently, so ``tokens_per_image`` is settable; when unset it comes from the calls this
project already made to the same model (their reported usage), else from OpenAI's
high-detail tile rule for a 4:3 image of the configured longest side. Measured spending
uses the usage each reply reports (the estimate where a server reports none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Output tokens assumed per reply before any is measured ({"better": ..., "reason": ...}).
DEFAULT_OUTPUT_TOKENS = 60


def tile_rule_tokens(longest_side: int, aspect: float = 4 / 3) -> int:
    """Image tokens by OpenAI's high-detail rule: fit in 2048, shortest side to <= 768,
    then 85 + 170 per 512-px tile."""
    w = float(longest_side)
    h = w / aspect
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def text_tokens(text: str) -> int:
    """A rough token count of English text (4 characters a token)."""
    return max(1, math.ceil(len(text) / 4))


@dataclass(frozen=True)
class Pricing:
    """Prices in US dollars per million tokens (0 = free, e.g. a local server)."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    tokens_per_image: int | None = None  # None: measured, else the tile rule
    output_tokens: int = DEFAULT_OUTPUT_TOKENS

    def __post_init__(self) -> None:
        for name in ("input_per_million", "output_per_million"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a price of 0 or more, not {v!r}")

    @property
    def free(self) -> bool:
        return self.input_per_million == 0 and self.output_per_million == 0

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


@dataclass(frozen=True)
class CallEstimate:
    input_tokens: int
    output_tokens: int
    cost: float  # USD per call
    basis: str  # where the token counts came from, for the user


def estimate_call(
    pricing: Pricing, prompt_text: str, image_side: int, measured: tuple[float, float, int] | None = None
) -> CallEstimate:
    """Tokens and cost of one call. ``measured``: (mean input tokens, mean output tokens,
    number of calls) reported by earlier calls to the same model with the same prompt."""
    if pricing.tokens_per_image is not None:
        per_image, basis = int(pricing.tokens_per_image), f"{pricing.tokens_per_image} tokens per image (set)"
        inp = 2 * per_image + text_tokens(prompt_text) + 20
        out = pricing.output_tokens
    elif measured and measured[2] > 0:
        inp, out = round(measured[0]), round(measured[1])
        basis = f"measured on {measured[2]} earlier call{'s' * (measured[2] != 1)}"
    else:
        per_image = tile_rule_tokens(image_side)
        basis = f"{per_image} tokens per image (OpenAI tile rule at {image_side} px; set it for other providers)"
        inp = 2 * per_image + text_tokens(prompt_text) + 20
        out = pricing.output_tokens
    return CallEstimate(inp, out, pricing.cost(inp, out), basis)


def format_usd(x: float) -> str:
    if x == 0:
        return "$0"
    if x < 0.01:
        return f"${x:.4f}"
    return f"${x:,.2f}" if x >= 1 else f"${x:.3f}"
