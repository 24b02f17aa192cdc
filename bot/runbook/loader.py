"""Loading runbook files and folders: reading, parsing, checking, across files too.

Parsing is :mod:`bot.runbook.source` (YAML) and :mod:`bot.runbook.markdown`;
the checks are :mod:`bot.runbook.structure` and :mod:`bot.runbook.semantics`.

Every problem in a file is reported at once, each pointing at the offending
node (``path:line:col: message``): the key for an unknown key, the value for
a bad value, the second occurrence of a duplicate, otherwise the step's id.
Loading never executes anything from the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Literal

from bot.errors import Diagnostic, RunbookLoadError
from bot.runbook.markdown import load_markdown
from bot.runbook.model import Runbook
from bot.runbook.source import Pos, SourceError, load_yaml
from bot.runbook.structure import ActionCatalog, Report, validate
from bot.runbook.templates import environment

__all__ = [
    "MAX_FILE_BYTES",
    "RUNBOOK_SUFFIXES",
    "ActionCatalog",
    "FileResult",
    "LoadResult",
    "LoadedRunbook",
    "find_runbook_files",
    "load_file",
    "load_paths",
    "load_text",
    "read_source",
]

MAX_FILE_BYTES = 1024 * 1024
RUNBOOK_SUFFIXES = (".yaml", ".yml", ".md")


@dataclass(slots=True)
class LoadedRunbook:
    """A runbook that loaded, with where it came from."""

    runbook: Runbook
    path: str
    form: Literal["yaml", "markdown"]
    digest: str
    source: str
    commands: list[tuple[str, Pos]] = field(default_factory=list)
    name_pos: Pos = field(default_factory=lambda: Pos(1, 1))

    @property
    def name(self) -> str:
        return self.runbook.name


@dataclass(slots=True)
class FileResult:
    """The outcome of loading one file (picklable, for parallel loading)."""

    path: str
    diagnostics: list[Diagnostic]
    loaded: LoadedRunbook | None = None
    name: str | None = None
    name_pos: Pos = field(default_factory=lambda: Pos(1, 1))
    commands: list[tuple[str, Pos]] = field(default_factory=list)
    skipped: bool = False
    valid: bool = False  # loaded without errors (``loaded`` may be dropped to save copying)


@dataclass(slots=True)
class LoadResult:
    """Runbooks loaded from files and folders."""

    runbooks: dict[str, LoadedRunbook]
    diagnostics: list[Diagnostic]
    files: int
    names: list[str] = field(default_factory=list)  # every runbook that loaded, sorted

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def raise_for_errors(self) -> None:
        if self.errors:
            raise RunbookLoadError(self.errors)

    def get(self, name: str) -> LoadedRunbook | None:
        return self.runbooks.get(name)

    def by_command(self, word: str) -> LoadedRunbook | None:
        for loaded in self.runbooks.values():
            if any(word == command for command, _ in loaded.commands):
                return loaded
        return None


def _form_of(path: str) -> Literal["yaml", "markdown"]:
    return "markdown" if path.lower().endswith(".md") else "yaml"


def read_source(path: str) -> tuple[str | None, Diagnostic | None]:
    """Read a runbook file's text, refusing large, binary or non-UTF-8 files."""
    try:
        size = FsPath(path).stat().st_size
        if size > MAX_FILE_BYTES:
            return None, Diagnostic(path, 1, 1, f"file too large ({size:,} bytes; limit 1 MiB)")
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, Diagnostic(path, 1, 1, f"cannot read file: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return None, Diagnostic(path, 1, 1, "file too large (limit 1 MiB)")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        return None, Diagnostic(path, line, 1, "not a text file (contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, Diagnostic(path, line, column, "not UTF-8 text")
    return text, None


def load_text(
    text: str,
    path: str,
    catalog: ActionCatalog,
    *,
    form: Literal["yaml", "markdown"] | None = None,
    configured: Callable[[str], bool] | None = None,
    documentation_ok: bool = False,
) -> FileResult:
    """Load one runbook from its text; ``form`` defaults from the file name."""
    form = form or _form_of(path)
    report = Report(path)
    if len(text) > MAX_FILE_BYTES:
        report.error(Pos(1, 1), f"file too large ({len(text):,} characters; limit 1 MiB)")
        return FileResult(path, report.items)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        report.error(_pos_of(text, exc.start), "not valid Unicode text (a lone surrogate)")
        return FileResult(path, report.items)
    if size > MAX_FILE_BYTES:
        report.error(Pos(1, 1), f"file too large ({size:,} bytes; limit 1 MiB)")
        return FileResult(path, report.items)
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte order mark is not content
    defaults: dict[str, Any] = {}
    try:
        if form == "markdown":
            data, smap, block_errors, defaults = load_markdown(text)
            if documentation_ok and not _looks_like_runbook(text, data):
                return FileResult(path, [], skipped=True)
            for err in block_errors:
                report.error(err.pos, err.message)
        else:
            data, smap = load_yaml(text)
    except SourceError as exc:
        report.error(exc.pos, exc.message)
        return FileResult(path, report.items)
    result = FileResult(path, report.items)
    runbook = validate(data, smap, report, catalog, defaults, configured, result)
    if form == "markdown":
        _explain_markdown(report, defaults)
    if runbook is not None and not any(d.severity == "error" for d in report.items):
        result.loaded = LoadedRunbook(
            runbook=runbook,
            path=path,
            form=form,
            digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            source=text,
            commands=result.commands,
            name_pos=result.name_pos,
        )
        result.valid = True
    result.diagnostics = sorted(report.items, key=lambda d: (d.line, d.column))
    return result


_MARKDOWN_HINTS = {
    "missing required key 'name'": (
        "front_matter",
        " (a Markdown runbook starts with YAML front matter between '---' lines)",
    ),
    "a runbook needs at least one step": (
        "steps",
        " (in Markdown, each step is a fenced code block whose info string is 'step')",
    ),
}


def _explain_markdown(report: Report, defaults: dict[str, Any]) -> None:
    """Add what a Markdown author is likely missing to the messages that need it."""
    for index, diag in enumerate(report.items):
        hint = _MARKDOWN_HINTS.get(diag.message)
        if hint is not None and not defaults.get(hint[0]):
            report.items[index] = dataclasses.replace(diag, message=diag.message + hint[1])


def _pos_of(text: str, offset: int) -> Pos:
    line_start = text.rfind("\n", 0, offset) + 1
    return Pos(text.count("\n", 0, offset) + 1, offset - line_start + 1)


def _looks_like_runbook(text: str, data: dict[str, Any]) -> bool:
    return text.startswith("---") or bool(data.get("steps"))


def load_file(
    path: str,
    catalog: ActionCatalog,
    *,
    configured: Callable[[str], bool] | None = None,
    documentation_ok: bool = False,
) -> FileResult:
    """Load one runbook file."""
    text, problem = read_source(path)
    if problem is not None:
        return FileResult(path, [problem])
    assert text is not None
    return load_text(text, path, catalog, configured=configured, documentation_ok=documentation_ok)


# -- files and folders --------------------------------------------------------------


def find_runbook_files(paths: Iterable[str]) -> tuple[list[str], list[Diagnostic]]:
    """Files to load: named files as given, folders searched recursively (sorted)."""
    files: list[str] = []
    problems: list[Diagnostic] = []
    seen: set[str] = set()  # a file named twice (or inside a folder also named) loads once

    def add(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for given in paths:
        target = FsPath(given)
        if target.is_dir():
            for found in sorted(
                str(p)
                for p in target.rglob("*")
                if p.is_file()
                and p.suffix.lower() in RUNBOOK_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(target).parts)
            ):
                add(found)
        elif target.is_file():
            add(given)
        elif target.exists():
            problems.append(Diagnostic(given, 1, 1, "not a regular file or folder"))
        else:
            problems.append(Diagnostic(given, 1, 1, "no such file or directory"))
    return files, problems


def load_paths(
    paths: Iterable[str],
    catalog: ActionCatalog,
    *,
    configured: Callable[[str], bool] | None = None,
    jobs: int = 1,
    keep_models: bool = True,
) -> LoadResult:
    """Load every runbook under ``paths`` and check names and commands across files.

    Markdown files in folders that are plainly documentation (no front matter
    and no step blocks, like a README) are skipped.

    Args:
        paths: files and folders (searched recursively, hidden entries skipped).
        catalog: the connector actions runbooks may use.
        configured: tells whether a connector has its settings (else a warning).
        jobs: worker processes for large folders (64 files or more).
        keep_models: False to learn only names and diagnostics (``validate``):
            ``runbooks`` then stays empty and nothing big is copied between processes.
    """
    given = list(paths)
    files, problems = find_runbook_files(given)
    explicit = {p for p in given if FsPath(p).is_file()}
    if configured is not None:
        configured = functools.cache(configured)  # asked once per connector, not per step
    with _gc_paused():
        results = _load_many(files, catalog, configured, jobs, explicit, keep_models)
    diagnostics = list(problems)
    runbooks: dict[str, LoadedRunbook] = {}
    valid: dict[str, str] = {}
    names: dict[str, str] = {}
    commands: dict[str, tuple[str, str]] = {}
    counted = 0
    for res in results:
        if res.skipped:
            continue
        counted += 1
        diagnostics.extend(res.diagnostics)
        if res.name is not None:
            if res.name in names:
                diagnostics.append(
                    Diagnostic(
                        res.path,
                        res.name_pos.line,
                        res.name_pos.column,
                        f"duplicate runbook name {res.name!r} (also in {names[res.name]})",
                    )
                )
                continue
            names[res.name] = res.path
        for word, pos in res.commands:
            if word in commands and commands[word][0] != res.name:
                other_name, other_path = commands[word]
                diagnostics.append(
                    Diagnostic(
                        res.path,
                        pos.line,
                        pos.column,
                        f"command {word!r} is already used by runbook {other_name!r} "
                        f"({other_path})",
                    )
                )
                continue
            commands[word] = (res.name or "?", res.path)
        if res.valid and res.name is not None:
            valid[res.name] = res.path
        if res.loaded is not None:
            runbooks[res.loaded.name] = res.loaded
    bad_files = {d.path for d in diagnostics if d.severity == "error"}
    runbooks = {name: lr for name, lr in runbooks.items() if lr.path not in bad_files}
    return LoadResult(
        runbooks=runbooks,
        diagnostics=diagnostics,
        files=counted,
        names=sorted(name for name, path in valid.items() if path not in bad_files),
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while loading.

    Loading allocates hundreds of thousands of short-lived, acyclic objects
    (parser events, dicts, positions); reference counting frees them all,
    and the collector's passes over the growing heap cost ~15% of the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_WORKER: tuple[Any, Any] = (None, None)


def _worker_load(args: tuple[str, bool, bool]) -> FileResult:
    path, doc_ok, keep = args
    catalog, configured = _WORKER
    res = load_file(path, catalog, configured=configured, documentation_ok=doc_ok)
    if not keep:
        res.loaded = None
    return res


def _load_many(
    files: list[str],
    catalog: ActionCatalog,
    configured: Callable[[str], bool] | None,
    jobs: int,
    explicit: set[str],
    keep_models: bool,
) -> list[FileResult]:
    if jobs > 1 and len(files) >= 64 and "fork" in _start_methods():
        import multiprocessing

        global _WORKER
        _WORKER = (catalog, configured)
        # Build what every worker needs once, before forking, so each inherits it.
        environment()
        import re2  # noqa: F401

        gc.freeze()  # keep the inherited heap out of the workers' collections
        try:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(jobs) as pool:
                work = [(path, path not in explicit, keep_models) for path in files]
                chunk = max(1, len(files) // (jobs * 8))
                return pool.map(_worker_load, work, chunksize=chunk)
        finally:
            gc.unfreeze()
    results = [
        load_file(path, catalog, configured=configured, documentation_ok=path not in explicit)
        for path in files
    ]
    if not keep_models:
        for res in results:
            res.loaded = None
    return results


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()
