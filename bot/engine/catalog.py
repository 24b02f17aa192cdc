"""Runbooks by name (as loaded now) and by digest (exactly as a run started with them).

A run carries on with the definition it started with, even if the file has
changed since: the text is stored in the data directory under its digest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.engine.plan import RunbookPlan
from bot.errors import NotFoundError, RunbookLoadError
from bot.runbook.loader import ActionCatalog, LoadedRunbook, load_text
from bot.runbook.model import Runbook


class RunbookCatalog:
    """The runbooks an engine can start, and the definitions its runs use."""

    def __init__(
        self,
        loaded: dict[str, LoadedRunbook],
        actions: ActionCatalog,
        load_definition: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> None:
        self.loaded = dict(loaded)
        self.actions = actions
        self._load_definition = load_definition
        self._by_digest: dict[str, Runbook] = {lr.digest: lr.runbook for lr in loaded.values()}
        self._plans: dict[str, RunbookPlan] = {}

    def get(self, name: str) -> LoadedRunbook:
        """A runbook by name.

        Raises:
            NotFoundError: with the names that exist.
        """
        try:
            return self.loaded[name]
        except KeyError:
            known = ", ".join(sorted(self.loaded)) or "none"
            raise NotFoundError(
                f"unknown runbook {name!r} (runbooks: {known})", kind="runbook", key=name
            ) from None

    def by_command(self, word: str) -> LoadedRunbook | None:
        for loaded in self.loaded.values():
            if any(word == command for command, _ in loaded.commands):
                return loaded
        return None

    def definition(self, digest: str, name: str = "") -> Runbook:
        """The runbook a run started with.

        Raises:
            NotFoundError: the definition is not stored and not loaded.
            RunbookLoadError: the stored text no longer loads (e.g. a connector is gone).
        """
        if digest in self._by_digest:
            return self._by_digest[digest]
        found = self._load_definition(digest) if self._load_definition else None
        if found is None:
            raise NotFoundError(
                f"the definition of runbook {name!r} this run started with is missing",
                kind="definition",
                key=digest,
            )
        form, text = found
        result = load_text(text, f"<{name or 'runbook'}@{digest[:12]}>", self.actions, form=form)  # type: ignore[arg-type]
        if result.loaded is None:
            raise RunbookLoadError(result.diagnostics)
        self._by_digest[digest] = result.loaded.runbook
        return result.loaded.runbook

    def plan(self, digest: str, name: str = "") -> RunbookPlan:
        if digest not in self._plans:
            self._plans[digest] = RunbookPlan(self.definition(digest, name))
        return self._plans[digest]

    def names(self) -> list[str]:
        return sorted(self.loaded)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": lr.name,
                "title": lr.runbook.display_title,
                "description": lr.runbook.description,
                "path": lr.path,
            }
            for lr in sorted(self.loaded.values(), key=lambda item: item.name)
        ]
