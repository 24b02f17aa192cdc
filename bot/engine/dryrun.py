"""Dry runs: what a mutating call would have returned is unknown, so it renders as a placeholder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class Placeholder:
    """Stands in for the output of a call a dry run did not make.

    Renders as ``<steps.id.output…>``; attribute and item access give deeper
    placeholders, so later templates still render.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Placeholder:
        if name.startswith("_"):
            raise AttributeError(name)
        return Placeholder(f"{self._path}.{name}")

    def __getitem__(self, key: Any) -> Placeholder:
        return Placeholder(f"{self._path}[{key!r}]")

    def __str__(self) -> str:
        return f"<{self._path}…>"

    __repr__ = __str__

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Placeholder) and other._path == self._path

    def __hash__(self) -> int:
        return hash(self._path)
