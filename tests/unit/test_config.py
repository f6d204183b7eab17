"""Settings: defaults, one clear line for a bad value, production guards."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploymate.core.config import Settings, load_settings
from deploymate.core.errors import ConfigurationError

STRONG_KEY = "0" * 43 + "="


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(f"DEPLOYMATE_{name}", value)
    return load_settings()


def test_defaults_use_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _load(monkeypatch, DATA_DIR=str(tmp_path))
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path}/deploymate.db"
    assert settings.env == "development" and settings.local_docker is True
    assert settings.session_cookie_name == "deploymate_session"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ENV": "staging"}, "DEPLOYMATE_ENV"),
        ({"DATABASE_URL": "mysql://x"}, "DEPLOYMATE_DATABASE_URL"),
        ({"SESSION_IDLE_MINUTES": "0"}, "DEPLOYMATE_SESSION_IDLE_MINUTES"),
        ({"SECURE_COOKIES": "maybe"}, "DEPLOYMATE_SECURE_COOKIES"),
        ({"SSH_HOST_KEY_CHECKING": "no"}, "DEPLOYMATE_SSH_HOST_KEY_CHECKING"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        _load(monkeypatch, **env)
    assert named in info.value.detail and "\n" not in info.value.detail


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"SECURE_COOKIES": "true"}, "SERVER_CREDENTIALS_KEY"),
        ({"SERVER_CREDENTIALS_KEY": STRONG_KEY}, "SECURE_COOKIES"),
        (
            {
                "SERVER_CREDENTIALS_KEY": STRONG_KEY,
                "SECURE_COOKIES": "true",
                "ADMIN_PASSWORD": "password1234",
            },
            "ADMIN_PASSWORD is too weak",
        ),
    ],
)
def test_production_refuses_unsafe_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reason: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        _load(monkeypatch, ENV="production", **env)
    assert reason in info.value.detail


def test_production_with_safe_settings_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(
        monkeypatch,
        ENV="production",
        SERVER_CREDENTIALS_KEY=STRONG_KEY,
        SECURE_COOKIES="true",
        ADMIN_PASSWORD="a-long-and-unusual-passphrase",
    )
    assert settings.local_docker is False
    assert settings.session_cookie_name == "__Host-deploymate_session"


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / "deploymate.env"
    env_file.write_text(f"DEPLOYMATE_DATA_DIR={tmp_path}/d\nDEPLOYMATE_SESSION_MAX_HOURS=5\n")
    settings = load_settings(env_file)
    assert settings.session_max_hours == 5 and settings.data_dir == tmp_path / "d"
    with pytest.raises(ConfigurationError, match="env file not found"):
        load_settings(tmp_path / "missing.env")


def test_a_field_named_like_a_location_keeps_its_name() -> None:
    """`path` is both where FastAPI finds input and a health check's field."""
    from deploymate.core.errors import field_errors

    raw = [
        {"loc": ("body", "health_check", "path"), "msg": "Value error, must start with /"},
        {"loc": ("path", "deployment_id"), "msg": "Input should be less than 2147483648"},
        {"loc": ("query", "limit"), "msg": "too big"},
        {"loc": (), "msg": "Value error, private_key: required when auth_type is key"},
    ]
    assert [(e.field, e.message) for e in field_errors(raw)] == [
        ("health_check.path", "must start with /"),
        ("deployment_id", "Input should be less than 2147483648"),
        ("limit", "too big"),
        ("private_key", "required when auth_type is key"),
    ]
