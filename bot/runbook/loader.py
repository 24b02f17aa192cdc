"""Loading runbook files: reading, structural validation and semantic checks.

Every problem in a file is reported at once, each pointing at the offending
node (``path:line:col: message``): the key for an unknown key, the value for
a bad value, the second occurrence of a duplicate, otherwise the step's id.
Loading never executes anything from the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from bot.errors import Diagnostic, RunbookLoadError
from bot.runbook import semantics
from bot.runbook.checks import describe_errors
from bot.runbook.markdown import load_markdown
from bot.runbook.model import (
    STEP_KINDS,
    AlertTrigger,
    CommandTrigger,
    Runbook,
    RunbookHeader,
    ScheduleTrigger,
)
from bot.runbook.source import Pos, SourceError, SourceMap, load_yaml

MAX_FILE_BYTES = 1024 * 1024
RUNBOOK_SUFFIXES = (".yaml", ".yml", ".md")
TRIGGER_KINDS: dict[str, type[BaseModel]] = {
    "command": CommandTrigger,
    "alert": AlertTrigger,
    "schedule": ScheduleTrigger,
}


class ActionCatalog(Protocol):
    """What the loader needs to know about connectors."""

    def lookup(self, ref: str) -> Any:
        """The action's spec (with ``input_model``); LookupError with a message if unknown."""
        ...


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


@dataclass(slots=True)
class LoadResult:
    """Runbooks loaded from files and folders."""

    runbooks: dict[str, LoadedRunbook]
    diagnostics: list[Diagnostic]
    files: int

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


class _Report:
    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[Diagnostic] = []

    def error(self, pos: Pos, message: str) -> None:
        self.items.append(Diagnostic(self.path, pos.line, pos.column, message))

    def warning(self, pos: Pos, message: str) -> None:
        self.items.append(Diagnostic(self.path, pos.line, pos.column, message, "warning"))


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
    if text.startswith("\ufeff"):
        text = text[1:]
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
    report = _Report(path)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        report.error(Pos(1, 1), "file too large (limit 1 MiB)")
        return FileResult(path, report.items)
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
    runbook = _validate(data, smap, report, catalog, defaults, configured, result)
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
    result.diagnostics = sorted(report.items, key=lambda d: (d.line, d.column))
    return result


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


def _validate(
    data: Any,
    smap: SourceMap,
    report: _Report,
    catalog: ActionCatalog,
    defaults: dict[str, Any],
    configured: Callable[[str], bool] | None,
    result: FileResult,
) -> Runbook | None:
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        report.error(
            smap.value(()),
            f"a runbook is a mapping of keys (name, steps, ...), but this document is {what}",
        )
        return None
    raw_header = {key: value for key, value in data.items() if key not in ("steps", "triggers")}
    if defaults.get("title") and "title" not in raw_header:
        raw_header["title"] = defaults["title"]
    header_ok = True
    try:
        header = RunbookHeader.model_validate(raw_header)
    except ValidationError as exc:
        header_ok = False
        for pos, message in describe_errors(exc, RunbookHeader, (), smap):
            report.error(pos, message)
        header = None
    if isinstance(data.get("name"), str):
        result.name = data["name"]
        result.name_pos = smap.value(("name",))
    triggers = _validate_triggers(data.get("triggers"), smap, report, result)
    steps = _validate_steps(data, smap, report, defaults)
    if header is None:
        # still check what can be checked with what we have
        header = _partial_header(raw_header)
    semantics.check(
        header=header,
        triggers=triggers,
        steps=[(i, s.step if isinstance(s, Salvaged) else s) for i, s in steps],
        raw=data,
        smap=smap,
        report=report,
        catalog=catalog,
        configured=configured,
    )
    if not header_ok or triggers is None:
        return None
    if any(step is None or isinstance(step, Salvaged) for _, step in steps):
        return None
    if not steps:
        return None
    values = {name: getattr(header, name) for name in RunbookHeader.model_fields}
    values["triggers"] = [trigger for _, trigger in triggers]
    values["steps"] = [step for _, step in steps]
    fields_set = set(header.model_fields_set) | {"steps"}
    if triggers:
        fields_set.add("triggers")
    return Runbook.model_construct(_fields_set=fields_set, **values)


def _partial_header(raw: dict[str, Any]) -> RunbookHeader:
    """A header with the parts that validate, so later checks still run."""
    keep: dict[str, Any] = {"name": "invalid"}
    for key in ("inputs", "run_by", "channel", "concurrency_key"):
        if key in raw:
            try:
                RunbookHeader.model_validate({"name": "x", key: raw[key]})
            except ValidationError:
                continue
            keep[key] = raw[key]
    return RunbookHeader.model_validate(keep)


def _validate_triggers(
    raw: Any, smap: SourceMap, report: _Report, result: FileResult
) -> list[tuple[int, Any]] | None:
    if raw is None:
        return []
    if not isinstance(raw, list):
        report.error(smap.value(("triggers",)), "'triggers' must be a list")
        return None
    found: list[tuple[int, Any]] = []
    ok = True
    for index, item in enumerate(raw):
        path = ("triggers", index)
        kinds = [key for key in TRIGGER_KINDS if isinstance(item, dict) and key in item]
        if not isinstance(item, dict) or len(kinds) != 1:
            ok = False
            if isinstance(item, dict) and len(kinds) > 1:
                report.error(
                    smap.key((*path, kinds[1])),
                    f"a trigger has exactly one kind; found {kinds[0]!r} and {kinds[1]!r}",
                )
            elif isinstance(item, dict) and item:
                key = next(iter(item))
                from bot.runbook.checks import suggest

                report.error(
                    smap.key((*path, key)),
                    f"unknown trigger kind {key!r}{suggest(key, TRIGGER_KINDS)} "
                    "(use command, alert or schedule)",
                )
            else:
                report.error(smap.value(path), "a trigger is one of: command, alert, schedule")
            continue
        model = TRIGGER_KINDS[kinds[0]]
        try:
            trigger = model.model_validate(item)
        except ValidationError as exc:
            ok = False
            for pos, message in describe_errors(exc, model, path, smap):
                report.error(pos, message)
            continue
        if isinstance(trigger, CommandTrigger):
            result.commands.append((trigger.command, smap.value((*path, "command"))))
        found.append((index, trigger))
    return found if ok else None


def _validate_steps(
    data: dict[str, Any], smap: SourceMap, report: _Report, defaults: dict[str, Any]
) -> list[tuple[int, Any]]:
    raw_steps = data.get("steps")
    if raw_steps is None:
        report.error(smap.value(()), "missing required key 'steps'")
        return []
    if not isinstance(raw_steps, list):
        report.error(smap.value(("steps",)), "'steps' must be a list of steps")
        return []
    if not raw_steps:
        report.error(smap.value(("steps",)), "a runbook needs at least one step")
        return []
    step_defaults: list[dict[str, str]] = defaults.get("steps", [])
    results: list[tuple[int, Any]] = []
    for index, raw in enumerate(raw_steps):
        path = ("steps", index)
        if not isinstance(raw, dict):
            report.error(smap.value(path), "a step is a mapping of keys (id, uses, with, ...)")
            results.append((index, None))
            continue
        if index < len(step_defaults):
            raw = {**{k: v for k, v in step_defaults[index].items() if k not in raw}, **raw}
        id_pos = smap.value((*path, "id")) if "id" in raw else smap.value(path)
        kinds = [key for key in STEP_KINDS if key in raw]
        if len(kinds) != 1:
            if kinds:
                report.error(
                    smap.key((*path, kinds[1])),
                    f"a step has exactly one kind; found {kinds[0]!r} and {kinds[1]!r}",
                )
            else:
                report.error(id_pos, "a step needs one of 'uses', 'approval' or 'notify'")
            results.append((index, None))
            continue
        model = STEP_KINDS[kinds[0]]
        try:
            step = model.model_validate(raw)
        except ValidationError as exc:
            for pos, message in describe_errors(exc, model, path, smap, missing_at=id_pos):
                report.error(pos, message)
            results.append((index, _salvage(model, raw, exc, kinds[0])))
            continue
        results.append((index, step))
    return results


class Salvaged:
    """A step that failed validation, re-read without its bad keys for further checks."""

    def __init__(self, step: Any) -> None:
        self.step = step


def _salvage(model: type[BaseModel], raw: dict[str, Any], exc: ValidationError, kind: str) -> Any:
    bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    if bad & {"id", kind}:
        return None
    trimmed = {key: value for key, value in raw.items() if key not in bad}
    try:
        return Salvaged(model.model_validate(trimmed))
    except ValidationError:
        return None


# -- files and folders --------------------------------------------------------------


def find_runbook_files(paths: Iterable[str]) -> tuple[list[str], list[Diagnostic]]:
    """Files to load: named files as given, folders searched recursively (sorted)."""
    files: list[str] = []
    problems: list[Diagnostic] = []
    for given in paths:
        target = FsPath(given)
        if target.is_dir():
            found = sorted(
                str(p)
                for p in target.rglob("*")
                if p.is_file()
                and p.suffix.lower() in RUNBOOK_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(target).parts)
            )
            files.extend(found)
        elif target.is_file():
            files.append(given)
        else:
            problems.append(Diagnostic(given, 1, 1, "no such file or directory"))
    return files, problems


def load_paths(
    paths: Iterable[str],
    catalog: ActionCatalog,
    *,
    configured: Callable[[str], bool] | None = None,
    jobs: int = 1,
) -> LoadResult:
    """Load every runbook under ``paths`` and check names and commands across files.

    Markdown files in folders that are plainly documentation (no front matter
    and no step blocks, like a README) are skipped.
    """
    given = list(paths)
    files, problems = find_runbook_files(given)
    explicit = {p for p in given if FsPath(p).is_file()}
    results = _load_many(files, catalog, configured, jobs, explicit)
    diagnostics = list(problems)
    runbooks: dict[str, LoadedRunbook] = {}
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
        if res.loaded is not None:
            runbooks[res.loaded.name] = res.loaded
    bad_files = {d.path for d in diagnostics if d.severity == "error"}
    runbooks = {name: lr for name, lr in runbooks.items() if lr.path not in bad_files}
    return LoadResult(runbooks=runbooks, diagnostics=diagnostics, files=counted)


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
) -> list[FileResult]:
    if jobs > 1 and len(files) >= 64:
        import multiprocessing

        global _WORKER
        _WORKER = (catalog, configured)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            work = [(path, path not in explicit, True) for path in files]
            return pool.map(_worker_load, work, chunksize=max(1, len(files) // (jobs * 4)))
    return [
        load_file(path, catalog, configured=configured, documentation_ok=path not in explicit)
        for path in files
    ]
