"""Settings: parsing, errors, and the generated reference kept in step with the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings, read_dotenv, reference_markdown
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_matches_the_settings_model() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert documented == reference_markdown(), (
        "docs/configuration.md is stale: regenerate it with "
        "`python -m bot.config > docs/configuration.md`"
    )


def test_groups_tokens_and_defaults_parse() -> None:
    settings = load_settings(
        {
            "RUNBOOK_GROUPS": "soc-leads=alice,bob;managers=carol",
            "RUNBOOK_API_TOKENS": "ci:0123456789abcdef0123,ops:fedcba9876543210fedc",
            "RUNBOOK_PORT": "8080",
        }
    )
    assert settings.groups == {"soc-leads": ["alice", "bob"], "managers": ["carol"]}
    assert settings.api_tokens["ci"].get_secret_value() == "0123456789abcdef0123"
    assert "0123456789abcdef0123" not in repr(settings)
    assert settings.port == 8080
    assert str(settings.data_dir) == ".runbook"
    assert not settings.slack_enabled


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RUNBOOK_PORT": "eighty"}, "RUNBOOK_PORT"),
        ({"RUNBOOK_API_TOKENS": "ci:0123456789abcdef0123,ci:fedcba98765432100123"}, "twice"),
        ({"RUNBOOK_API_TOKENS": "ci:0123456789abcdef0123,cd:0123456789abcdef0123"}, "also"),
        ({"RUNBOOK_GROUPS": "nogroup"}, "group=member"),
        ({"RUNBOOK_LOG_FORMAT": "xml"}, "RUNBOOK_LOG_FORMAT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert needle in str(info.value)


def test_a_short_api_token_is_taken(tmp_path: Path) -> None:
    settings = load_settings({"RUNBOOK_API_TOKENS": "ci:short"})
    assert settings.api_tokens["ci"].get_secret_value() == "short"


def test_a_shared_token_is_not_shown_in_the_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"RUNBOOK_API_TOKENS": "a:sharedsecret123,b:sharedsecret123"})
    assert "sharedsecret123" not in str(info.value)


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    from bot.config import environment

    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nexport RUNBOOK_PORT=4000\nSLACK_BOT_TOKEN='xoxb-from-file'\n"
        "RUNBOOK_HOST=0.0.0.0 # trailing comment\n",
        encoding="utf-8",
    )
    assert read_dotenv(dotenv) == {
        "RUNBOOK_PORT": "4000",
        "SLACK_BOT_TOKEN": "xoxb-from-file",
        "RUNBOOK_HOST": "0.0.0.0",
    }
    merged = environment({"RUNBOOK_PORT": "5000"}, dotenv=str(dotenv))
    assert merged["RUNBOOK_PORT"] == "5000" and merged["RUNBOOK_HOST"] == "0.0.0.0"
    dotenv.write_text("not a setting line\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_dotenv(dotenv)
    assert ".env:1" in str(info.value)
