"""server.config: environment parsing, flag overrides, validation, the README table."""

from __future__ import annotations

import pytest

from server.config import (
    DEV_JWT_SECRET,
    OPTIONS,
    ConfigError,
    Settings,
    load_settings,
    option,
    settings_table,
    unknown_variables,
)

SECRET = "0123456789abcdef0123456789abcdef-prod"


def problem_names(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [name for name, _ in exc.value.problems]


def test_empty_environment_gives_the_defaults() -> None:
    """No variables at all: every setting has its documented default."""
    settings = load_settings({})
    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_path == "./livepilot.db"
    assert settings.max_message_bytes == 65536
    assert settings.permessage_deflate is False
    assert settings.allowed_origins == ()
    assert settings.redis_url is None
    assert settings.jwt_public_key_path is None


def test_every_variable_is_parsed() -> None:
    """Each LIVEPILOT_* variable reaches its attribute, with its type."""
    env = {
        "LIVEPILOT_HOST": " 0.0.0.0 ",
        "LIVEPILOT_PORT": "9001",
        "LIVEPILOT_DATA_PATH": "/var/lib/livepilot/db.sqlite",
        "LIVEPILOT_JWT_SECRET": SECRET,
        "LIVEPILOT_JWT_PUBLIC_KEY_PATH": "/etc/livepilot/jwt.pub",
        "LIVEPILOT_TOKEN_LEEWAY_S": "5",
        "LIVEPILOT_ALLOWED_ORIGINS": "https://Console.Example.com/, http://localhost:5173",
        "LIVEPILOT_MAX_MESSAGE_BYTES": "131_072",
        "LIVEPILOT_PERMESSAGE_DEFLATE": "yes",
        "LIVEPILOT_RATE_PER_S": "12.5",
        "LIVEPILOT_RATE_BURST": "40",
        "LIVEPILOT_ABUSE_REFUSALS": "7",
        "LIVEPILOT_ABUSE_WINDOW_S": "30",
        "LIVEPILOT_SEND_BUFFER_BYTES": "262144",
        "LIVEPILOT_HEARTBEAT_S": "5",
        "LIVEPILOT_IDLE_TIMEOUT_S": "15.5",
        "LIVEPILOT_HISTORY_RETENTION": "0",
        "LIVEPILOT_SNAPSHOT_INTERVAL": "250",
        "LIVEPILOT_ROOM_IDLE_S": "90",
        "LIVEPILOT_LOG_LEVEL": "debug",
        "LIVEPILOT_REDIS_URL": "redis://redis:6379/0",
    }
    assert load_settings(env) == Settings(
        host="0.0.0.0",
        port=9001,
        data_path="/var/lib/livepilot/db.sqlite",
        jwt_secret=SECRET,
        jwt_public_key_path="/etc/livepilot/jwt.pub",
        token_leeway_s=5,
        allowed_origins=("https://console.example.com", "http://localhost:5173"),
        max_message_bytes=131072,
        permessage_deflate=True,
        rate_per_s=12.5,
        rate_burst=40,
        abuse_refusals=7,
        abuse_window_s=30.0,
        send_buffer_bytes=262_144,
        heartbeat_s=5.0,
        idle_timeout_s=15.5,
        history_retention=0,
        snapshot_interval=250,
        room_idle_s=90.0,
        log_level="DEBUG",
        redis_url="redis://redis:6379/0",
    )


def test_variables_without_the_prefix_are_ignored() -> None:
    """Only LIVEPILOT_* variables count; PORT or HOST alone change nothing."""
    assert load_settings({"PORT": "1", "HOST": "example.com"}) == Settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False), ("off", False)],
)
def test_booleans_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    """true/false, 1/0, yes/no and on/off, in any case."""
    assert load_settings({"LIVEPILOT_PERMESSAGE_DEFLATE": raw}).permessage_deflate is expected


def test_empty_optional_variables_mean_unset() -> None:
    """An empty Redis URL or key path (e.g. an unset compose variable) means None."""
    env = {
        "LIVEPILOT_REDIS_URL": "",
        "LIVEPILOT_JWT_PUBLIC_KEY_PATH": " ",
        "LIVEPILOT_ALLOWED_ORIGINS": "",
    }
    settings = load_settings(env)
    assert settings.redis_url is None
    assert settings.jwt_public_key_path is None
    assert settings.allowed_origins == ()


def test_overrides_win_over_the_environment() -> None:
    """A flag value replaces the variable's; typed or string values both work."""
    env = {"LIVEPILOT_PORT": "9001", "LIVEPILOT_LOG_LEVEL": "ERROR", "LIVEPILOT_HOST": "0.0.0.0"}
    settings = load_settings(
        env, port=7000, log_level="warning", allowed_origins=["https://a.example"]
    )
    assert settings.port == 7000
    assert settings.log_level == "WARNING"
    assert settings.allowed_origins == ("https://a.example",)
    assert settings.host == "0.0.0.0"


def test_none_override_means_flag_not_given() -> None:
    """Parsed flags that were not given (None) leave the environment's value alone."""
    settings = load_settings({"LIVEPILOT_PORT": "9001"}, port=None, redis_url=None)
    assert settings.port == 9001
    assert settings.redis_url is None


def test_string_overrides_are_parsed_like_the_environment() -> None:
    """A flag given as a string goes through the same parser as the variable."""
    settings = load_settings({}, port="9100", permessage_deflate="on", rate_per_s="2.5")
    assert (settings.port, settings.permessage_deflate, settings.rate_per_s) == (9100, True, 2.5)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("LIVEPILOT_PORT", "http"),
        ("LIVEPILOT_PORT", "65536"),
        ("LIVEPILOT_PORT", "-1"),
        ("LIVEPILOT_HOST", "  "),
        ("LIVEPILOT_DATA_PATH", ""),
        ("LIVEPILOT_JWT_SECRET", ""),
        ("LIVEPILOT_JWT_SECRET", "too-short-for-hs256"),
        ("LIVEPILOT_TOKEN_LEEWAY_S", "601"),
        ("LIVEPILOT_ALLOWED_ORIGINS", "console.example.com"),
        ("LIVEPILOT_ALLOWED_ORIGINS", "https://ok.example,ftp://files.example"),
        ("LIVEPILOT_ALLOWED_ORIGINS", "https://console.example.com/app"),
        ("LIVEPILOT_MAX_MESSAGE_BYTES", "100"),
        ("LIVEPILOT_PERMESSAGE_DEFLATE", "maybe"),
        ("LIVEPILOT_RATE_PER_S", "0"),
        ("LIVEPILOT_RATE_PER_S", "nan"),
        ("LIVEPILOT_RATE_PER_S", "inf"),
        ("LIVEPILOT_RATE_BURST", "0"),
        ("LIVEPILOT_RATE_BURST", "1.5"),
        ("LIVEPILOT_ABUSE_REFUSALS", "0"),
        ("LIVEPILOT_ABUSE_WINDOW_S", "-3"),
        ("LIVEPILOT_SEND_BUFFER_BYTES", "0"),
        ("LIVEPILOT_HEARTBEAT_S", "0"),
        ("LIVEPILOT_HISTORY_RETENTION", "-1"),
        ("LIVEPILOT_SNAPSHOT_INTERVAL", "0"),
        ("LIVEPILOT_LOG_LEVEL", "verbose"),
        ("LIVEPILOT_REDIS_URL", "http://redis:6379"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(variable: str, raw: str) -> None:
    """Every invalid value raises ConfigError naming exactly that variable."""
    with pytest.raises(ConfigError) as exc:
        load_settings({variable: raw})
    assert problem_names(exc) == [variable]
    assert str(exc.value).startswith(f"{variable}: ")


def test_every_problem_is_reported_at_once() -> None:
    """Several bad variables and flags are all listed, not only the first."""
    with pytest.raises(ConfigError) as exc:
        load_settings({"LIVEPILOT_PORT": "x", "LIVEPILOT_LOG_LEVEL": "loud"}, rate_burst=0)
    assert problem_names(exc) == ["LIVEPILOT_PORT", "LIVEPILOT_LOG_LEVEL", "--rate-burst"]


def test_a_bad_override_names_the_flag() -> None:
    """An invalid flag value names the flag, not the environment variable."""
    with pytest.raises(ConfigError) as exc:
        load_settings({}, port=70000)
    assert problem_names(exc) == ["--port"]


@pytest.mark.parametrize("value", [True, 8080.5, [8080]])
def test_an_override_of_the_wrong_type_is_refused(value: object) -> None:
    """A typed override must have the setting's type (a bool is not a port)."""
    with pytest.raises(ConfigError) as exc:
        load_settings({}, port=value)
    assert problem_names(exc) == ["--port"]


def test_a_secret_override_is_named_by_attribute_and_not_echoed() -> None:
    """The env-only secret has no flag; its error names the attribute, not the value."""
    with pytest.raises(ConfigError) as exc:
        load_settings({}, jwt_secret="hunter2")
    assert problem_names(exc) == ["jwt_secret"]
    assert "hunter2" not in str(exc.value)


def test_an_unknown_override_is_refused() -> None:
    """A keyword that names no setting is an error, not silently dropped."""
    with pytest.raises(ConfigError) as exc:
        load_settings({}, prot=1)
    assert problem_names(exc) == ["prot"]


def test_idle_timeout_must_exceed_heartbeat() -> None:
    """An idle timeout not longer than the heartbeat is refused, naming the timeout."""
    with pytest.raises(ConfigError) as exc:
        load_settings({"LIVEPILOT_HEARTBEAT_S": "10", "LIVEPILOT_IDLE_TIMEOUT_S": "10"})
    assert problem_names(exc) == ["LIVEPILOT_IDLE_TIMEOUT_S"]
    with pytest.raises(ConfigError) as exc:
        load_settings({"LIVEPILOT_HEARTBEAT_S": "10"}, idle_timeout_s=5)
    assert problem_names(exc) == ["--idle-timeout-s"]


def test_a_heartbeat_beyond_the_default_idle_timeout_names_the_heartbeat() -> None:
    """Only the heartbeat was set: the error points at the heartbeat variable."""
    with pytest.raises(ConfigError) as exc:
        load_settings({"LIVEPILOT_HEARTBEAT_S": "90"})
    assert problem_names(exc) == ["LIVEPILOT_HEARTBEAT_S"]


def test_dev_secret_is_detected() -> None:
    """The default secret is flagged as the dev one; a configured one is not."""
    assert Settings().is_dev_secret
    assert load_settings({}).jwt_secret == DEV_JWT_SECRET
    assert not load_settings({"LIVEPILOT_JWT_SECRET": SECRET}).is_dev_secret


def test_dev_secret_is_not_flagged_when_rs256_is_configured() -> None:
    """With a public key the HS256 secret is unused, so it is not a dev-secret risk."""
    assert not load_settings({"LIVEPILOT_JWT_PUBLIC_KEY_PATH": "/k.pub"}).is_dev_secret


def test_dev_secret_is_long_enough_for_hs256() -> None:
    """The dev secret itself passes the 32-byte minimum it imposes on others."""
    assert load_settings({"LIVEPILOT_JWT_SECRET": DEV_JWT_SECRET}).is_dev_secret
    assert len(DEV_JWT_SECRET.encode()) >= 32


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after they are built."""
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_repr_masks_the_secret_and_redis_password() -> None:
    """Logging the settings never shows the JWT secret or a Redis password."""
    settings = load_settings(
        {"LIVEPILOT_JWT_SECRET": SECRET, "LIVEPILOT_REDIS_URL": "redis://app:s3cr3t@redis:6379/0"}
    )
    text = repr(settings)
    assert SECRET not in text
    assert "s3cr3t" not in text
    assert "redis://app:***@redis:6379/0" in text
    assert str(settings) == text


def test_no_origin_header_is_allowed_but_browsers_need_a_listed_origin() -> None:
    """Empty allowed_origins: clients without Origin pass, any browser origin is refused."""
    settings = Settings()
    assert settings.origin_allowed(None)
    assert not settings.origin_allowed("https://console.example.com")
    assert not settings.origin_allowed("null")


def test_listed_origins_match_case_and_slash_insensitively() -> None:
    """A listed origin matches however the browser capitalises it; others are refused."""
    settings = load_settings({"LIVEPILOT_ALLOWED_ORIGINS": "https://console.example.com"})
    assert settings.origin_allowed("https://Console.Example.com/")
    assert not settings.origin_allowed("https://evil.example.com")
    assert not settings.origin_allowed("http://console.example.com")


def test_star_allows_every_origin() -> None:
    """``*`` in allowed_origins accepts any browser origin."""
    assert load_settings({"LIVEPILOT_ALLOWED_ORIGINS": "*"}).origin_allowed("https://any.example")


def test_unknown_variables_are_reported() -> None:
    """LIVEPILOT_* variables that name no setting are listed (likely typos)."""
    env = {"LIVEPILOT_PROT": "1", "LIVEPILOT_PORT": "2", "PATH": "/bin"}
    assert unknown_variables(env) == ["LIVEPILOT_PROT"]


def test_names_are_mechanical() -> None:
    """Attribute, variable and flag are one name: port, LIVEPILOT_PORT, --port."""
    assert [opt.name for opt in OPTIONS] == list(Settings.__struct_fields__)
    port = option("send_buffer_bytes")
    assert (port.env, port.flag, port.default) == (
        "LIVEPILOT_SEND_BUFFER_BYTES",
        "--send-buffer-bytes",
        1_048_576,
    )
    assert option("jwt_secret").flag is None


def test_settings_table_lists_every_option() -> None:
    """The README table has a header and one row per setting, with flag and default."""
    lines = settings_table().splitlines()
    assert lines[0] == "| Environment variable | Flag | Default | Meaning |"
    assert len(lines) == 2 + len(OPTIONS)
    for opt, line in zip(OPTIONS, lines[2:], strict=True):
        assert line.startswith(f"| `{opt.env}` | ")
        assert line.count(" | ") == 3
    assert "| `LIVEPILOT_PORT` | `--port` | `8080` |" in settings_table()
    assert "| `LIVEPILOT_JWT_SECRET` | — |" in settings_table()
    assert "| `LIVEPILOT_REDIS_URL` | `--redis-url` | unset |" in settings_table()


def test_connection_limits_are_settings() -> None:
    """max_connections (0: derived from the descriptor limit), the handshake and hello
    deadlines are variables and flags, bounded like the rest."""
    # H6
    defaults = Settings()
    assert (defaults.max_connections, defaults.handshake_timeout_s, defaults.hello_timeout_s) == (
        0,
        5.0,
        5.0,
    )
    env = {
        "LIVEPILOT_MAX_CONNECTIONS": "5_000",
        "LIVEPILOT_HANDSHAKE_TIMEOUT_S": "2.5",
        "LIVEPILOT_HELLO_TIMEOUT_S": "3",
    }
    settings = load_settings(env, hello_timeout_s="4")
    assert (settings.max_connections, settings.handshake_timeout_s, settings.hello_timeout_s) == (
        5000,
        2.5,
        4.0,
    )
    assert [
        option(n).flag for n in ("max_connections", "handshake_timeout_s", "hello_timeout_s")
    ] == ["--max-connections", "--handshake-timeout-s", "--hello-timeout-s"]
    with pytest.raises(ConfigError) as bad:
        load_settings(
            {
                "LIVEPILOT_MAX_CONNECTIONS": "-1",
                "LIVEPILOT_HANDSHAKE_TIMEOUT_S": "0",
                "LIVEPILOT_HELLO_TIMEOUT_S": "soon",
            }
        )
    assert problem_names(bad) == [
        "LIVEPILOT_MAX_CONNECTIONS",
        "LIVEPILOT_HANDSHAKE_TIMEOUT_S",
        "LIVEPILOT_HELLO_TIMEOUT_S",
    ]
