"""Strict environment parsing: a bad value stops start-up with a message naming the variable."""

from __future__ import annotations

import os
from collections.abc import Callable


class ConfigError(RuntimeError):
    pass


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip()


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value in (None, "") else value


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str] | None = None, *, item: Callable[[str], str] = str) -> list[str]:
    value = _raw(name)
    if value in (None, ""):
        return list(default or [])
    return [item(part.strip()) for part in value.split(",") if part.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _raw(name)
    if value in (None, ""):
        return default
    if value.lower() not in choices:
        raise ConfigError(f"{name} must be one of {'/'.join(choices)}, got {value!r}")
    return value.lower()


def env_json_commands(name: str) -> dict[str, list[str]]:
    """A JSON object of name → argv list (non-empty list of strings), e.g. '{"files": ["npx", "srv"]}'."""
    import json

    value = _raw(name)
    if value in (None, ""):
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object of name to command list: {exc}") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(key, str) and key and isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv)
        for key, argv in parsed.items()
    ):
        raise ConfigError(f'{name} must look like {{"name": ["command", "arg", ...]}}, got {value!r}')
    return parsed
