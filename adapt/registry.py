"""A tiny name -> object registry used by every extension point (peft-style one-line registration).

Example::

    SELECTORS = Registry("selector")

    @SELECTORS.register("random")
    class RandomSelector: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from adapt.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered objects; an unknown name is an :class:`~adapt.errors.UnknownNameError`
    (a config error, exit status 2) that lists the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    @classmethod
    def of(cls, kind: str, items: dict[str, T]) -> "Registry[T]":
        """A registry holding ``items`` (for a fixed table of names, e.g. the built-in streams)."""
        reg: Registry[T] = cls(kind)
        reg._items.update(items)
        return reg

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, key: str | None = None, source: str | None = None) -> T:
        """The object registered as ``name``; ``key`` (e.g. ``selection.sampler``) and ``source`` (the
        config file) go into the error when there is none."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown(name, key, source)) from None

    def check(self, name: str, key: str | None = None, source: str | None = None) -> None:
        """Raise the :meth:`get` error unless ``name`` is registered."""
        self.get(name, key, source)

    def unknown(self, name: object, key: str | None = None, source: str | None = None) -> str:
        """The one message for a name this registry does not hold."""
        where = (f"{source}: " if source else "") + (f"key '{key}': " if key else "")
        return f"{where}unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
