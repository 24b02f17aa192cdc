"""Settings: one frozen model, read once from the environment (and ``./.env``).

Every variable is declared here with its description; ``docs/configuration.md``
is generated from this model (``python -m bot.config``), and a test keeps the
two equal. Connector settings (``RUNBOOK_<CONNECTOR>_<FIELD>``) and alert
secrets (``RUNBOOK_ALERT_SECRET_<SOURCE>``) are read from the same mapping.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bot.errors import ConfigError

ALERT_SECRET_PREFIX = "RUNBOOK_ALERT_SECRET_"


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value`` lines, ``#`` comments, quotes, ``export``."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return values
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().replace("_", "").isalnum():
            raise ConfigError(f"{path}:{number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def environment(
    environ: Mapping[str, str] | None = None, dotenv: str | None = ".env"
) -> dict[str, str]:
    """The effective environment: ``.env`` values overridden by the real environment."""
    merged = read_dotenv(dotenv) if dotenv else {}
    merged.update(os.environ if environ is None else environ)
    return merged


def _parse_groups(text: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, members = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected group=member,member in {part.strip()!r}")
        groups[name.strip()] = [m.strip() for m in members.split(",") if m.strip()]
    return groups


def _parse_tokens(text: str) -> dict[str, SecretStr]:
    tokens: dict[str, SecretStr] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, token = part.strip().partition(":")
        if not sep or not name or not token:
            raise ValueError("expected name:token pairs separated by commas")
        if name in tokens:
            raise ValueError(f"API token name {name!r} is given twice")
        if any(token == other.get_secret_value() for other in tokens.values()):
            raise ValueError(f"the token of {name!r} is also another name's token")
        tokens[name] = SecretStr(token)
    return tokens


class Settings(BaseModel):
    """Runbook Bot's settings. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    runbooks_dir: Path = Field(
        Path("runbooks"),
        alias="RUNBOOK_RUNBOOKS_DIR",
        description="Folder of runbooks (`*.yaml`, `*.yml`, `*.md`, searched recursively).",
    )
    data_dir: Path = Field(
        Path(".runbook"),
        alias="RUNBOOK_DATA_DIR",
        description="State and audit log. Back it up; one process owns it at a time.",
    )
    host: str = Field(
        "127.0.0.1", alias="RUNBOOK_HOST", description="Address `runbook serve` listens on."
    )
    port: int = Field(
        3000, alias="RUNBOOK_PORT", ge=0, le=65535, description="Port `runbook serve` listens on."
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict,
        alias="RUNBOOK_GROUPS",
        description="Groups for terminal and API approvers: `soc-leads=alice,bob;managers=carol`.",
    )
    api_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        alias="RUNBOOK_API_TOKENS",
        description="API bearer tokens as comma-separated `name:token` pairs; the name is the "
        "actor (`api:<name>`). Use 32+ random characters; `serve` warns about tokens shorter "
        "than 16 and refuses one token under two names.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", alias="RUNBOOK_LOG_FORMAT", description="`text` or `json` (one object a line)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", alias="RUNBOOK_LOG_LEVEL", description="Least severe log level written."
    )
    slack_bot_token: SecretStr | None = Field(
        None,
        alias="SLACK_BOT_TOKEN",
        description="Slack bot token (`xoxb-…`). Slack is off without it.",
    )
    slack_signing_secret: SecretStr | None = Field(
        None,
        alias="SLACK_SIGNING_SECRET",
        description="Slack signing secret; every request to `/slack/events` is verified with it.",
    )
    slack_api_url: str = Field(
        "https://slack.com/api/",
        alias="RUNBOOK_SLACK_API_URL",
        description="Slack Web API base URL (a fake Slack in tests).",
    )
    slack_team_id: str | None = Field(
        None,
        alias="RUNBOOK_SLACK_TEAM_ID",
        description="Only accept Slack requests from this workspace (default: the bot token's "
        "workspace, from `auth.test`).",
    )
    max_concurrent_runs: int = Field(
        50,
        alias="RUNBOOK_MAX_CONCURRENT_RUNS",
        ge=1,
        le=10_000,
        description="Runs executing at once; more wait as `pending`, in arrival order.",
    )
    max_alert_bytes: int = Field(
        1024 * 1024,
        alias="RUNBOOK_MAX_ALERT_BYTES",
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest alert body accepted (413 above); from 1024 to 16777216.",
    )

    @field_validator("groups", mode="before")
    @classmethod
    def _groups(cls, value: Any) -> Any:
        return _parse_groups(value) if isinstance(value, str) else value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        return _parse_tokens(value) if isinstance(value, str) else value

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None and self.slack_signing_secret is not None


def load_settings(env: Mapping[str, str], **overrides: Any) -> Settings:
    """Build settings from an environment mapping plus explicit overrides (CLI flags).

    Raises:
        ConfigError: naming the variable that is wrong.
    """
    names = {info.alias for info in Settings.model_fields.values() if info.alias}
    values: dict[str, Any] = {key: env[key] for key in names if env.get(key, "") != ""}
    for key, value in overrides.items():
        if value is not None:
            values[Settings.model_fields[key].alias or key] = value
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "?"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{field}: {msg}")
        raise ConfigError("bad settings: " + "; ".join(problems)) from None


def alert_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """Alert source secrets by source name as the variable spells it (upper case)."""
    return {
        key[len(ALERT_SECRET_PREFIX) :]: value
        for key, value in env.items()
        if key.startswith(ALERT_SECRET_PREFIX) and value
    }


def alert_secret_name(source: str) -> str:
    """``crowd-strike`` → ``RUNBOOK_ALERT_SECRET_CROWD_STRIKE``."""
    return ALERT_SECRET_PREFIX + source.upper().replace("-", "_")


def reference_markdown() -> str:
    """The configuration reference, generated from :class:`Settings`."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from bot/config.py by `python -m bot.config`; do not edit by hand. -->",
        "",
        "Settings come from environment variables; a `.env` file in the working directory is "
        "read too (the real environment wins).",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, Path):
            shown = f"`{default}`"
        elif default in (None, {}, []):
            shown = "—"
        else:
            shown = f"`{default}`"
        lines.append(f"| `{info.alias or name}` | {shown} | {info.description} |")
    lines += [
        f"| `{ALERT_SECRET_PREFIX}<SOURCE>` | — | Secret of an alert source (source upper-cased, "
        "`-` → `_`): HMAC key for `X-Runbook-Signature` or the bearer token. |",
        "",
        "## Connector settings",
        "",
        "Each connector reads `RUNBOOK_<CONNECTOR>_<FIELD>`. A connector is *configured* when "
        "its required settings are set; runbooks that use an unconfigured connector still "
        "validate (with a warning), and `runbook serve --sandbox` points it at a fake vendor.",
        "",
        "| variable | required | secret | default | meaning |",
        "|---|---|---|---|---|",
    ]
    from connectors.registry import ConnectorRegistry

    registry = ConnectorRegistry.discover(include_entry_points=False)
    for name in registry.names():
        cls = registry.connector_class(name)
        secrets = set(cls.secret_settings())
        for field, info in cls.Settings.model_fields.items():
            default = "—" if info.is_required() else f"`{info.get_default()}`"
            if info.get_default() in (None, ""):
                default = "—"
            lines.append(
                f"| `{cls.env_name(field)}` | {'yes' if info.is_required() else 'no'} | "
                f"{'yes' if field in secrets else 'no'} | {default} | "
                f"{info.description or f'{cls.title or name} {field.replace(chr(95), chr(32))}'} |"
            )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown(), end="")
