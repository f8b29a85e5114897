"""The ``fastport serve`` settings: declared once in ``SETTINGS``, documented by the README, resolved in order."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from fastport.cli import build_config, build_parser, main
from fastport.config import SETTINGS, BrokerLimits, ServerConfig, Setting, resolve_server_config
from fastport.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"
BY_NAME = {setting.name: setting for setting in SETTINGS}
#: ``ServerConfig`` fields that no flag sets: four come from the environment alone, ``limits`` holds the
#: ``BrokerLimits`` settings, and picows's own upgrade bound is set in code only.
UNFLAGGED_FIELDS = {"admin_user", "admin_pass", "admin_token", "reuse_port", "limits", "ws_handshake_timeout_s"}
#: The variables of the settings without a flag.
ENVIRONMENT_ONLY = (
    "ADMIN_USER",
    "ADMIN_PASS",
    "FASTPORT_ADMIN_USER",
    "FASTPORT_ADMIN_PASS",
    "FASTPORT_ADMIN_TOKEN",
    "FASTPORT_REUSE_PORT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``FASTPORT_*`` variable of the developer's shell leaks into a test."""
    for name in (*(setting.env for setting in SETTINGS), *ENVIRONMENT_ONLY, "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)


def readme_flag_table() -> dict[str, str]:
    """Each flag of the README's ``fastport serve`` table and the default it shows, backticks removed."""
    section = README.read_text(encoding="utf-8").split("\n## Running it\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `--"):
            continue
        flags_cell, defaults_cell = (cell.strip() for cell in line.split("|")[1:3])
        flags = re.findall(r"`(--[a-z-]+)`", flags_cell)
        defaults = [item.strip().strip("`") for item in defaults_cell.split(",")]
        if len(defaults) == 1:
            defaults *= len(flags)
        assert len(defaults) == len(flags), line
        table.update(zip(flags, defaults, strict=True))
    return table


def value_of(config: ServerConfig, setting: Setting) -> Any:
    """The value ``setting`` resolved to in ``config``."""
    return getattr(config.limits if setting.owner is BrokerLimits else config, setting.field)


def test_each_setting_is_declared_once_for_a_field_of_its_owner() -> None:
    assert len(BY_NAME) == len(SETTINGS)
    assert len({(setting.owner, setting.field) for setting in SETTINGS}) == len(SETTINGS)
    for setting in SETTINGS:
        assert setting.field in {item.name for item in dataclasses.fields(setting.owner)}, setting.name
        assert setting.env == "FASTPORT_" + setting.name.upper().replace("-", "_")
    flagged = {setting.field for setting in SETTINGS if setting.owner is ServerConfig}
    assert {item.name for item in dataclasses.fields(ServerConfig)} == flagged | UNFLAGGED_FIELDS


def test_init_timeout_lives_only_in_broker_limits() -> None:
    assert "init_timeout_s" not in {item.name for item in dataclasses.fields(ServerConfig)}
    assert BY_NAME["init-timeout"].owner is BrokerLimits


def test_readme_flag_table_lists_exactly_the_settings() -> None:
    assert set(readme_flag_table()) == {setting.flag for setting in SETTINGS}


def test_readme_flag_table_shows_each_declared_default() -> None:
    table = readme_flag_table()
    shown = {setting.flag: setting.default_text for setting in SETTINGS}
    assert table == shown


@pytest.mark.parametrize(
    "setting", [setting for setting in SETTINGS if not setting.default_label], ids=lambda setting: setting.name
)
def test_a_default_shown_as_a_value_reads_back_as_the_default(setting: Setting) -> None:
    assert setting.kind.parse(setting.default_text, setting.name) == setting.default


def test_the_data_dir_label_is_the_default_data_dir() -> None:
    setting = BY_NAME["data-dir"]
    assert Path(setting.default_label).expanduser() == setting.default


def test_serve_help_lists_every_flag_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for setting in SETTINGS:
        assert setting.flag in text and f"(default {setting.default_text})" in text, setting.name


@pytest.mark.parametrize(
    ("name", "flag_text", "env_text", "from_flag", "from_env"),
    [
        ("host", "0.0.0.0", "::1", "0.0.0.0", "::1"),
        ("log-level", "DEBUG", "Warning", "debug", "warning"),
        ("port", "4001", "4002", 4001, 4002),
        ("max-topic-depth", "8", "16", 8, 16),
        ("publish-rate", "10.5", "20", 10.5, 20.0),
        ("max-frame-size", "512KiB", "2MiB", 512 << 10, 2 << 20),
        ("outbound-buffer-limit", "65536", "1m", 65536, 1 << 20),
        ("init-timeout", "500ms", "2.5s", 0.5, 2.5),
        ("slow-consumer-grace", "3", "250ms", 3.0, 0.25),
        ("metrics-open", "1", "0", True, False),
        (
            "allowed-origins",
            "https://A.example/",
            "https://b.example, https://c.example",
            ("https://a.example",),
            ("https://b.example", "https://c.example"),
        ),
        ("data-dir", "/srv/flag", "/srv/env", Path("/srv/flag"), Path("/srv/env")),
        ("trusted-proxies", "10.0.0.0/8, ::1", "192.0.2.7", ("10.0.0.0/8", "::1"), ("192.0.2.7",)),
    ],
)
def test_a_flag_beats_the_environment_which_beats_the_default(
    name: str, flag_text: str, env_text: str, from_flag: object, from_env: object
) -> None:
    setting = BY_NAME[name]
    environ = {setting.env: env_text}
    assert value_of(resolve_server_config({name: flag_text}, environ), setting) == from_flag
    assert value_of(resolve_server_config({name: None}, environ), setting) == from_env
    assert value_of(resolve_server_config({}, {setting.env: ""}), setting) == setting.default


def test_the_parser_feeds_flags_to_the_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTPORT_MAX_FRAME_SIZE", "2MiB")
    monkeypatch.setenv("FASTPORT_INIT_TIMEOUT", "3")
    monkeypatch.setenv("FASTPORT_METRICS_OPEN", "no")
    args = build_parser().parse_args(["serve", "--init-timeout", "750ms", "--metrics-open", "--tls-cert", "c.pem"])
    monkeypatch.setenv("FASTPORT_TLS_KEY", "k.pem")
    config = build_config(args)
    assert config.max_frame_size == 2 << 20 and config.limits.init_timeout_s == 0.75
    assert config.metrics_open is True and (config.tls_cert, config.tls_key) == (Path("c.pem"), Path("k.pem"))


def test_the_settings_without_a_flag_come_from_the_environment() -> None:
    config = resolve_server_config(
        {},
        {
            "ADMIN_USER": "root",
            "ADMIN_PASS": "hunter2",
            "FASTPORT_ADMIN_USER": "admin",
            "FASTPORT_ADMIN_TOKEN": "t" * 16,
            "FASTPORT_REUSE_PORT": "1",
        },
    )
    assert (config.admin_user, config.admin_pass, config.admin_token) == ("admin", "hunter2", "t" * 16)
    assert config.reuse_port is True
    bare = resolve_server_config({}, {})
    assert (bare.admin_user, bare.admin_pass, bare.admin_token, bare.reuse_port) == (None, None, None, False)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "3k"], {}, "port must be a number, got '3k'"),
        (["--workers", "-2"], {}, "workers must be a number, got '-2'"),
        ([], {"FASTPORT_MAX_SUBSCRIPTIONS": "many"}, "max-subscriptions must be a number, got 'many'"),
        (["--max-subscriptions", "0"], {}, "max-subscriptions must be 1-1000000, got 0"),
        (["--publish-rate", "fast"], {}, "publish-rate must be a number, got 'fast'"),
        (["--publish-rate", "nan"], {}, "publish-rate must be 0.01-10000000 per second, got nan"),
        (["--max-body-size", "1GiB"], {}, "max-body-size must be a size such as 1048576, 512KiB or 1MiB, got '1GiB'"),
        ([], {"FASTPORT_OUTBOUND_BUFFER_LIMIT": "0"}, "outbound-buffer-limit must be 1024-1073741824 bytes, got 0"),
        (["--init-timeout", "soon"], {}, "init-timeout must be a duration such as 10, 2.5s or 500ms, got 'soon'"),
        (["--init-timeout", "10ms"], {}, "init-timeout must be 0.05-86400 seconds, got 0.01"),
        (["--slow-consumer-grace", "2h"], {}, "slow-consumer-grace must be a duration"),
        (["--idle-timeout", "-1"], {}, "idle-timeout must be a duration"),
        ([], {"FASTPORT_METRICS_OPEN": "maybe"}, "metrics-open must be 1 or 0, got 'maybe'"),
        (["--allowed-origins", "app.example"], {}, "allowed origin must look like https://example.com"),
        (["--data-dir", ""], {}, "data-dir must be a path, got ''"),
        (["--trusted-proxies", "10.0.0.0/33"], {}, "trusted-proxies must be addresses or networks"),
        ([], {"FASTPORT_TRUSTED_PROXIES": "10.0.0.1,nginx"}, "trusted-proxies must be addresses or networks"),
        (["--tls-key", "key.pem"], {}, "tls-cert and tls-key must be given together"),
        (["--log-format", "xml"], {}, "log-format must be one of text, json, got 'xml'"),
        (["--workers", "2"], {}, "--workers above 1 needs a shared engine"),
    ],
)
def test_a_bad_value_exits_2_with_one_line(
    args: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastport: error: {message}"), lines


def test_broker_limits_defaults_are_valid() -> None:
    assert BrokerLimits() == resolve_server_config({}, {}).limits


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_subscriptions_per_connection", 0, "max-subscriptions must be 1-1000000, got 0"),
        ("max_connections_per_session", 1_000_001, "max-connections-per-session must be 1-1000000, got 1000001"),
        ("publish_rate_per_s", 0.0, "publish-rate must be 0.01-10000000 per second, got 0"),
        ("publish_burst", 0, "publish-burst must be 1-10000000, got 0"),
        ("publish_violations_before_close", 0, "publish_violations_before_close must be 1-1000000, got 0"),
        ("auth_failures_before_delay", -1, "auth_failures_before_delay must be 0-1000, got -1"),
        ("auth_failures_before_cutoff", 0, "auth_failures_before_cutoff must be 1-1000, got 0"),
        ("auth_failure_window_s", 0.0, "auth_failure_window_s must be 0.05-86400 seconds, got 0"),
        ("auth_address_failures_before_cutoff", 0, "auth_address_failures_before_cutoff must be 1-100000, got 0"),
        ("max_topic_length", 0, "max-topic-length must be 1-65535 characters, got 0"),
        ("max_topic_depth", 2000, "max-topic-depth must be 1-1024 levels, got 2000"),
        ("outbound_buffer_limit", 100, "outbound-buffer-limit must be 1024-1073741824 bytes, got 100"),
        ("slow_consumer_grace_s", 1e6, "slow-consumer-grace must be 0.05-86400 seconds, got 1000000"),
        ("init_timeout_s", 0.01, "init-timeout must be 0.05-86400 seconds, got 0.01"),
    ],
)
def test_broker_limits_refuse_an_out_of_range_value(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        BrokerLimits(**{field: value})
    assert error.value.error == message


def test_every_broker_limits_field_is_validated_by_name() -> None:
    names = {setting.field: setting.name for setting in SETTINGS if setting.owner is BrokerLimits}
    for item in dataclasses.fields(BrokerLimits):
        with pytest.raises(ConfigError) as error:
            BrokerLimits(**{item.name: -1})
        assert error.value.error.startswith(f"{names.get(item.name, item.name)} must be "), item.name
