"""Checks for values that arrive from the web (forms, API clients): one sentence per mistake.

Every number, choice and index a visitor can send is checked here, so the Reconstruct tab, the
API and the Train tab answer a bad value with the same words. Errors are ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Any

QUOTE_CHARS = 40  # at most this much of a bad value is quoted back (a 5 MB value must not come back whole)


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with an ellipsis: safe to put in a sentence or a log."""
    try:
        text = (
            repr(value) if not isinstance(value, (str, bytes)) or len(value) <= 4 * limit else repr(value[: 4 * limit])
        )
    except Exception:  # a hostile __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_float(value: Any, what: str) -> float:
    """A finite number from a number or numeric text; ``what`` names it in the sentence."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} must be a number, not {quote(value)}.")
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise ValueError(f"{what} must be a number of a sensible size, not {quote(value)}.") from None
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, not {quote(value)}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, not {quote(value)}.")
    return number


def whole(value: Any, what: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; whole floats such as 16.0 (web forms send them) are accepted."""
    if isinstance(value, int) and not isinstance(value, bool) and not lo <= value <= hi:
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}, not {quote(value)}.")
    number = to_float(value, what)
    if number != int(number) or not lo <= number <= hi:
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}, not {quote(value)}.")
    return int(number)


def within(value: Any, what: str, lo: int, hi: int) -> int:
    """``whole``, for a choice among lo..hi (a dataset digit, an example, a map size): anything that is not
    one of them, NaN included, is answered with the range to choose from."""
    try:
        return whole(value, what, lo, hi)
    except ValueError:
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}, not {quote(value)}.") from None


def number(value: Any, what: str, lo: float, hi: float, lo_open: bool = False) -> float:
    """A number in [lo, hi] (or (lo, hi] with ``lo_open``)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
        raise ValueError(f"{what} must be a number of a sensible size, not {quote(value)}.")
    x = to_float(value, what)
    if x > hi or x < lo or (lo_open and x == lo):
        allowed = f"above {lo:g} and at most {hi:g}" if lo_open else f"from {lo:g} to {hi:g}"
        raise ValueError(f"{what} must be a number {allowed}, not {quote(value)}.")
    return x


def choice(value: Any, what: str, options: tuple[str, ...] | list[str]) -> str:
    """One of ``options`` (exact match)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"Unknown {what} {quote(value)}; choose one of: {', '.join(options)}.")
    return value


def flag(value: Any, what: str) -> bool:
    """True or False, nothing else (no "yes", no 1)."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise ValueError(f"{what} must be true or false, not {quote(value)}.")
    return bool(value)


# The training request from the web (the Train tab, /train): setting → (lowest, highest) accepted.
# A missing or None value keeps the default; the model and TrainConfig check their own invariants after.
MODEL_INTS = {
    "latent_dim": (1, 1024),
    "hidden_dim": (1, 4096),
    "max_train": (1, 10_000_000),
    "iwae_k": (0, 1000),
    "prior_components": (0, 1000),
}
MODEL_FLOATS = {"beta": (0.0, 1000.0)}
TRAIN_INTS = {
    "epochs": (1, 100_000),
    "batch_size": (1, 4096),
    "seed": (0, 2**31 - 1),
    "shift": (0, 8),
    "patience": (0, 100_000),
}
TRAIN_FLOATS = {
    "lr": (1e-6, 1.0),
    "kl_warmup_epochs": (0.0, 100_000.0),
    "weight_decay": (0.0, 1.0),
    "max_seconds": (0.0, 1e7),
}
TRAIN_CHOICES = {"schedule": ("constant", "cosine"), "precision": ("auto", "fp32", "bf16")}
TRAIN_FLAGS = ("binarize",)
REQUEST_TEXT = ("name", "model", "dataset")


def _nice(key: str) -> str:
    return key.replace("_", " ").capitalize()


def training_request(settings: Any) -> tuple[dict, dict, dict]:
    """A training request's settings → (text fields, model settings, TrainConfig settings), each checked.

    Empty strings and None count as "not given". Unknown settings are refused by name.
    """
    if not isinstance(settings, dict):
        raise ValueError("The training settings must be a dictionary of values.")
    known = {*MODEL_INTS, *MODEL_FLOATS, *TRAIN_INTS, *TRAIN_FLOATS, *TRAIN_CHOICES, *TRAIN_FLAGS, *REQUEST_TEXT}
    unknown = sorted(str(k)[:40] for k in set(settings) - known)
    if unknown:
        raise ValueError(f"Unknown training setting(s): {', '.join(unknown)}.")
    given = {k: v for k, v in settings.items() if v is not None and not (isinstance(v, str) and not v.strip())}
    text = {k: given[k] for k in REQUEST_TEXT if k in given}
    model = {k: whole(given[k], _nice(k), *r) for k, r in MODEL_INTS.items() if k in given}
    model.update({k: number(given[k], _nice(k), *r) for k, r in MODEL_FLOATS.items() if k in given})
    train = {k: whole(given[k], _nice(k), *r) for k, r in TRAIN_INTS.items() if k in given}
    train.update({k: number(given[k], _nice(k), *r) for k, r in TRAIN_FLOATS.items() if k in given})
    train.update({k: choice(given[k], _nice(k).lower(), opts) for k, opts in TRAIN_CHOICES.items() if k in given})
    train.update({k: flag(given[k], _nice(k)) for k in TRAIN_FLAGS if k in given})
    return text, model, train
