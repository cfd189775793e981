"""Settings are declared once (chatapp.settings) and parsed strictly, from flags over
``CHATAPP_*`` variables over defaults; the README's table is made from the declaration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chatapp.settings import (
    Settings,
    flag,
    load_settings,
    markdown_table,
    readme_table,
    specs,
    variable,
)

README = Path(__file__).resolve().parent.parent / "README.md"

#: For each setting, a value other than its default: (as given, as parsed).
OTHER_VALUES: dict[str, tuple[str, object]] = {
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9000", 9000),
    "db": ("postgresql://u@h/chat", "postgresql://u@h/chat"),
    "log_level": ("DEBUG", "debug"),
    "message_burst": ("3", 3.0),
    "message_rate": ("0.5", 0.5),
    "allowed_hosts": ("Chat.Example., b.example", ("chat.example", "b.example")),
    "allowed_origins": (
        "https://a.example, https://b.example",
        ("https://a.example", "https://b.example"),
    ),
    "redis_url": ("redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/1"),
    "redis_prefix": ("chat:2", "chat:2"),
    "presence_ttl": ("7.5", 7.5),
    "transports": ("websocket", ("websocket",)),
    "typing_timeout": ("2", 2.0),
    "access_token": ("s3cret", "s3cret"),
    "trust_proxy": ("on", True),
    "sign_up": ("Open", "open"),
    "sso_header": ("X-Forwarded-User", "X-Forwarded-User"),
    "retention_days": ("30", 30.0),
    "guests": ("off", False),
    "metrics": ("on", True),
    "fast_paths": ("heartbeat", ("heartbeat",)),
    "max_connections_per_ip": ("0", 0),
    "max_rooms_per_connection": ("3", 3),
    "mention_all": ("admins", "admins"),
    "edit_window": ("900", 900.0),
    "files_dir": ("/srv/chat-files", "/srv/chat-files"),
    "upload_max_bytes": ("0", 0),
    "upload_quota_bytes": ("1000", 1000),
    "event_burst": ("5", 5.0),
    "event_rate": ("2.5", 2.5),
    "ip_burst": ("50", 50.0),
    "ip_rate": ("10", 10.0),
    "max_frame_bytes": ("100000", 100_000),
    "max_body_bytes": ("2048", 2048),
    "max_queued_packets": ("50", 50),
    "max_queued_bytes": ("100000", 100_000),
    "max_queued_bytes_total": ("2000000", 2_000_000),
    "connect_timeout": ("1.5", 1.5),
    "ping_interval": ("3", 3.0),
    "ping_timeout": ("4", 4.0),
    "max_tcp_connections_per_ip": ("0", 0),
    "header_timeout": ("2", 2.0),
    "body_timeout": ("3", 3.0),
    "stop_timeout": ("4", 4.0),
}
NAMES = [name for name, _, _ in specs()]
#: Settings whose empty value means "none" (their default); every other refuses it.
EMPTY_MEANS_NONE = {"allowed_hosts", "allowed_origins", "files_dir", "redis_url", "sso_header"}
NUMBERS = [name for name, _, default in specs() if type(default) in (int, float)]


def refusal(capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str]) -> str:
    """The error line of settings that are refused (exit status 2)."""
    with pytest.raises(SystemExit) as exited:
        load_settings(argv, environ)
    assert exited.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_every_setting_has_another_value_here() -> None:
    assert sorted(OTHER_VALUES) == sorted(NAMES)


def test_the_declaration_is_the_settings() -> None:
    assert [f.name for f in dataclasses.fields(Settings)] == NAMES
    defaults = Settings()
    for name, _, default in specs():
        assert getattr(defaults, name) == default


@pytest.mark.parametrize("name", NAMES)
def test_a_flag_wins_over_its_variable_which_wins_over_the_default(name: str) -> None:
    text, value = OTHER_VALUES[name]
    default = getattr(Settings(), name)
    assert value != default
    if isinstance(value, bool):  # --flag or --no-flag
        argv = [flag(name) if value else "--no-" + flag(name).removeprefix("--")]
    else:
        argv = [flag(name), text]
    assert getattr(load_settings([], {}), name) == default
    assert getattr(load_settings([], {variable(name): text}), name) == value
    assert getattr(load_settings(argv, {}), name) == value
    # With its flag given, the variable is not even read: a bad one is no error.
    assert getattr(load_settings(argv, {variable(name): "\x00bad"}), name) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[(t, True) for t in ("true", "1", "yes", "on", "TRUE", "Yes", " on ")],
        *[(t, False) for t in ("false", "0", "no", "off", "False", "NO", "Off")],
    ],
)
def test_a_boolean_takes_the_usual_words(text: str, value: bool) -> None:
    assert load_settings([], {"CHATAPP_TRUST_PROXY": text}).trust_proxy is value


@pytest.mark.parametrize("text", ["ture", "", " ", "2", "y", "enabled", "truefalse"])
def test_a_malformed_boolean_is_an_error_naming_the_variable(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refusal(capsys, [], {"CHATAPP_TRUST_PROXY": text})
    assert "CHATAPP_TRUST_PROXY must" in line, line


@pytest.mark.parametrize("name", sorted(set(NAMES) - EMPTY_MEANS_NONE))
def test_an_empty_value_is_an_error(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"error: {variable(name)} must" in refusal(capsys, [], {variable(name): ""})
    if not isinstance(OTHER_VALUES[name][1], bool):  # a switch: its flag takes no value
        assert f"error: {flag(name)} must" in refusal(capsys, [flag(name), ""], {})


@pytest.mark.parametrize("name", sorted(EMPTY_MEANS_NONE))
def test_an_empty_list_or_url_means_none(name: str) -> None:
    assert getattr(load_settings([], {variable(name): ""}), name) == getattr(Settings(), name)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
@pytest.mark.parametrize("name", NUMBERS)
def test_a_number_must_be_finite(name: str, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"error: {variable(name)} must" in refusal(capsys, [], {variable(name): text})
    assert f"error: {flag(name)} must" in refusal(capsys, [f"{flag(name)}={text}"], {})


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("port", "-1", "must be between 0 and 65535"),
        ("port", "65536", "must be between 0 and 65535"),
        ("port", "80.5", "must be a whole number, not '80.5'"),
        ("message_rate", "0", "must be > 0"),
        ("message_burst", "0.5", "must be >= 1"),
        ("typing_timeout", "-1", "must be > 0"),
        ("presence_ttl", "0.5", "must be between 1 and 86400"),
        ("header_timeout", "86401", "must be between 0.1 and 86400"),
        ("ping_interval", "1.5", "must be a whole number of seconds"),
        ("max_queued_packets", "9", "must be >= 10"),
        ("max_connections_per_ip", "-1", "must be >= 0"),
        ("max_rooms_per_connection", "0", "must be >= 1"),
        ("log_level", "loud", "must be one of debug, info, warning, error, critical, not 'loud'"),
        ("transports", "pigeon", "must be 'polling,websocket' or 'websocket'"),
        ("redis_url", "http://h/", "must start with redis://, rediss:// or unix://"),
        (
            "allowed_hosts",
            "chat.example:80",
            "must list host names (no scheme, port or path), not 'chat.example:80'",
        ),
    ],
)
def test_an_out_of_range_value_is_an_error_naming_where_it_came_from(
    name: str, text: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert refusal(capsys, [], {variable(name): text}).endswith(f"{variable(name)} {reason}")
    assert refusal(capsys, [f"{flag(name)}={text}"], {}).endswith(f"{flag(name)} {reason}")


def test_no_trust_proxy_overrides_the_variable() -> None:
    settings = load_settings(["--no-trust-proxy"], {"CHATAPP_TRUST_PROXY": "yes"})
    assert settings.trust_proxy is False


def test_the_readme_table_is_the_generated_one() -> None:
    assert readme_table(README.read_text()) == markdown_table(), (
        "README.md's settings table is out of date: run .ci/settings_table.py --write"
    )


def test_the_table_and_help_list_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    table = markdown_table()
    with pytest.raises(SystemExit):
        load_settings(["--help"], {})
    shown = capsys.readouterr().out
    for name in NAMES:
        assert f"| `{flag(name)}` | `{variable(name)}` |" in table
        assert flag(name) in shown
