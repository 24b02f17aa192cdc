"""The built-in connectors' reference (settings and actions) as Markdown.

``python -m connectors.reference`` prints the section of
``docs/connectors.md`` between its ``BEGIN GENERATED`` and ``END GENERATED``
markers; a test keeps the two equal.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from connectors.base import Connector

BEGIN = "<!-- BEGIN GENERATED: python -m connectors.reference -->"
END = "<!-- END GENERATED -->"


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = re.sub(r"\btyping\.", "", text)
    text = re.sub(r"<class '([^']+)'>", r"\1", text)
    return text.replace("NoneType", "null").replace("Annotated[str, AfterValidator]", "str")


def _fields(model: type[BaseModel] | None, *, defaults: bool) -> str:
    if model is None:
        return "—"
    parts = []
    for name, info in model.model_fields.items():
        label = info.alias or name
        if info.is_required() or not defaults:
            parts.append(f"`{label}`")
        else:
            default = info.get_default(call_default_factory=True)
            shown = "" if default is None or default == PydanticUndefined else f" = {default!r}"
            parts.append(f"`{label}`?{shown}")
    if model.model_config.get("extra") == "allow" and not parts:
        return "any keys"
    return ", ".join(parts) or "—"


GENERIC = (
    "connect_timeout",
    "read_timeout",
    "total_timeout",
    "max_answer_mib",
    "verify_tls",
    "ca_bundle",
)


def _setting_order(field: str, required: bool) -> tuple[int, int]:
    """Base URL first, then credentials, then options, then the generic HTTP settings."""
    if field in ("base_url", "api_url"):
        return (0, 0)
    if field in GENERIC:
        return (3, GENERIC.index(field))
    return (1, 0) if required else (2, 0)


def _kind(mutating: bool, idempotent: bool) -> str:
    if not mutating:
        return "read-only"
    return "mutating, idempotent" if idempotent else "mutating"


def connector_markdown(cls: type[Connector]) -> str:
    """One connector: settings and actions."""
    lines = [f"### `{cls.name}` — {cls.title or cls.name}", ""]
    settings = cls.Settings.model_fields
    if settings:
        secrets = set(cls.secret_settings())
        lines += ["| setting | required | default |", "|---|---|---|"]
        for field in sorted(settings, key=lambda f: _setting_order(f, settings[f].is_required())):
            info = settings[field]
            default = info.get_default(call_default_factory=True)
            if info.is_required():
                shown = "—"
            elif default in (None, ""):
                shown = "unset"
            else:
                shown = f"`{default}`"
            secret = " (secret)" if field in secrets else ""
            required = "yes" if info.is_required() else "no"
            lines.append(f"| `{cls.env_name(field)}`{secret} | {required} | {shown} |")
        lines.append("")
    lines += ["| action | with | output | kind |", "|---|---|---|---|"]
    for spec in sorted(cls.actions().values(), key=lambda s: s.name):
        lines.append(
            f"| `{spec.ref}` | {_fields(spec.input_model, defaults=True)} | "
            f"{_fields(spec.output_model, defaults=False)} | "
            f"{_kind(spec.mutating, spec.idempotent)} |"
        )
    lines.append("")
    return "\n".join(lines)


def reference_markdown() -> str:
    """Every built-in connector, in the order of :data:`connectors.BUILTIN`."""
    from connectors.registry import ConnectorRegistry

    registry = ConnectorRegistry.discover(include_entry_points=False)
    from connectors import BUILTIN

    parts = [connector_markdown(registry.connector_class(name)) for name in BUILTIN]
    return "\n".join(parts)


if __name__ == "__main__":
    print(BEGIN)
    print()
    print(reference_markdown(), end="")
    print(END)
