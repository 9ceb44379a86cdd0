"""One registry mechanism (as timm's `register_model` / `create_model`) for heads, aggregations, locate methods,
retrieval losses and stores.

Entries are objects, or `"module:attribute"` strings imported on first use, so that listing the names (for CLI
choices and `--help`) imports neither torch nor timm.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from locator.errors import SettingsError


class Registry:
    def __init__(self, kind: str, lazy: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = dict(lazy or {})

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: `@HEADS.register("ce")` on a class or function; a name may be registered once."""
        def add(obj: Any) -> Any:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj and not isinstance(existing, str):
                raise SettingsError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj
        return add

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str) -> str:
        if name not in self._entries:
            raise SettingsError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        return name

    def get(self, name: str) -> Any:
        entry = self._entries[self.check(name)]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)
