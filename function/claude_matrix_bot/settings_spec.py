"""Each setting declared once (docs/design.md §3): a dataclass field made with `setting()` carries
its parser and its meaning; the variable's name is the field's name in upper case. `Settings`
and the core's `DecideConfig` are built from those fields alone, and a test holds the README's
table to them. Nothing here knows a particular variable."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import tzinfo
from pathlib import PurePath
from typing import Any, TypeVar

T = TypeVar("T")

_KEY = "claude_matrix_bot.setting"


class Unset(enum.Enum):
    """Marks "no value for a set but blank variable": blank counts as unset."""

    UNSET = enum.auto()


@dataclass(frozen=True, slots=True)
class Spec:
    """How one variable is read: `parse` raises ValueError saying what was expected."""

    parse: Callable[[str], object]
    meaning: str
    # The value when the variable is set but blank (`CREDIT_THRESHOLDS=` turns them off).
    when_empty: object = Unset.UNSET
    # The default as the README shows it, where the value itself does not say it.
    shown: str | None = None


@dataclass(frozen=True, slots=True)
class Declared:
    env: str
    name: str
    default: object
    spec: Spec


def setting(
    default: T,
    parse: Callable[[str], T],
    meaning: str,
    *,
    when_empty: T | Unset = Unset.UNSET,
    shown: str | None = None,
    secret: bool = False,
) -> T:
    """A settings field: `NAME` in the environment, parsed by `parse`, else `default`.
    A secret stays out of `repr`."""
    spec = Spec(parse, meaning, when_empty, shown)
    # The Field object is what the dataclass sees; typed as the value, like `field()` itself.
    return field(default=default, repr=not secret, metadata={_KEY: spec})


def declared(cls: type[Any]) -> tuple[Declared, ...]:
    """Every setting a dataclass declares, in field order."""
    return tuple(
        Declared(f.name.upper(), f.name, f.default, f.metadata[_KEY]) for f in fields(cls) if _KEY in f.metadata
    )


def parse_declared(cls: type[Any], env: Mapping[str, str], problems: list[str]) -> dict[str, object]:
    """The values `env` gives for `cls`'s settings (absent or blank: left to the default);
    each bad one adds `NAME: why` to `problems` instead."""
    values: dict[str, object] = {}
    for item in declared(cls):
        raw = env.get(item.env)
        text = raw.strip() if raw is not None else ""
        if not text:
            if raw is not None and item.spec.when_empty is not Unset.UNSET:
                values[item.name] = item.spec.when_empty
            continue
        try:
            values[item.name] = item.spec.parse(text)
        except ValueError as exc:
            problems.append(f"{item.env}: {exc}")
    return values


def shown_default(item: Declared) -> str:
    """The default as the README's table writes it: on/off, — for none, else the value in code."""
    value = item.default
    if item.spec.shown is not None:
        return item.spec.shown
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == ():
        return "—"
    if isinstance(value, tuple):
        return "`" + ",".join(str(part) for part in value) + "`"
    if isinstance(value, str | int | PurePath | tzinfo):
        return f"`{value}`"
    raise TypeError(f"{item.env}: say how its default {value!r} is shown (setting(shown=...))")
