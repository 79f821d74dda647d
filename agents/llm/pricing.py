"""What Claude models cost, in USD per million tokens (Anthropic's list prices, standard tier).

Model ids are matched by prefix so dated snapshots (`claude-sonnet-4-5-20250929`) and the `-latest`
/ `-0` aliases price like the model they name. Only those suffixes count: `claude-opus-4-6` is a
different model from `claude-opus-4` (and priced differently), so it is not guessed from it.
A model we have no price for costs 0: the run still works and records its token counts, and a zero
cost reads as "unknown" rather than as a made-up number. Add new models here.
"""

from __future__ import annotations

import re
from decimal import Decimal

MILLION = Decimal(1_000_000)

# (input, output) USD per million tokens.
PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "claude-opus-5-5": (Decimal("4"), Decimal("20")),
    "claude-sonnet-5-5": (Decimal("2"), Decimal("10")),
    "claude-opus-5": (Decimal("5"), Decimal("25")),
    "claude-sonnet-5": (Decimal("2"), Decimal("10")),
    "claude-opus-4-6": (Decimal("5"), Decimal("25")),
    "claude-sonnet-4-6": (Decimal("3"), Decimal("15")),
    "claude-opus-4-5": (Decimal("5"), Decimal("25")),
    "claude-opus-4-1": (Decimal("15"), Decimal("75")),
    "claude-opus-4": (Decimal("15"), Decimal("75")),
    "claude-sonnet-4-5": (Decimal("3"), Decimal("15")),
    "claude-sonnet-4": (Decimal("3"), Decimal("15")),
    "claude-3-7-sonnet": (Decimal("3"), Decimal("15")),
    "claude-haiku-4-5": (Decimal("1"), Decimal("5")),
    "claude-3-5-haiku": (Decimal("0.80"), Decimal("4")),
    "claude-3-haiku": (Decimal("0.25"), Decimal("1.25")),
}

_ALIAS_SUFFIX = re.compile(r"-(\d{8}|latest|0)")


def price(model: str) -> tuple[Decimal, Decimal] | None:
    """(input, output) USD per million tokens for `model`, or None when we don't know it."""
    for prefix, prices in PRICES.items():
        if model == prefix or (model.startswith(prefix) and _ALIAS_SUFFIX.fullmatch(model[len(prefix):])):
            return prices
    return None


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """The exact cost of one call; rounding is left to whoever stores it."""
    prices = price(model)
    if prices is None:
        return Decimal("0")
    per_input, per_output = prices
    return (per_input * input_tokens + per_output * output_tokens) / MILLION
