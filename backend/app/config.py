"""Configuration defaults and the startup check that refuses bad values."""

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

DEFAULTS: dict[str, Any] = {
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "JSON_MAX_DEPTH": 32,
    # Arrays and objects one body may hold: a batch of 100 events holds a few hundred.
    "JSON_MAX_CONTAINERS": 2048,
    # Array elements and object members one body may hold, all its arrays and objects
    # together: a batch of 100 of the tracker's events holds 700 to 900 (the tracker
    # splits its batches to fit).
    "JSON_MAX_ITEMS": 2048,
    "CORS_ORIGINS": "*",
    # Proxies in front whose X-Forwarded-For is believed (0: the TCP peer is the client).
    "TRUSTED_PROXY_HOPS": 0,
    "TELEMETRY_MAX_BATCH_EVENTS": 100,
    "TELEMETRY_ENABLED": True,
    "TELEMETRY_EVENTS_LOG": None,
    "TELEMETRY_INGEST_TOKEN": None,
    "TELEMETRY_MAX_EVENT_BYTES": 4096,
    "TELEMETRY_QUEUE_SIZE": 10_000,
    "TELEMETRY_STALL_SECONDS": 2.0,
    "TELEMETRY_RETRY_AFTER": 1,
    "TELEMETRY_WARN_INTERVAL": 60.0,
    # Events per client address, in the limits library's notation, or "off".
    "TELEMETRY_RATE_LIMIT": "3000/minute",
    "TELEMETRY_RATE_LIMIT_STORAGE": "memory://",
    # IPv6 clients share a budget per network of this prefix length: an ISP hands a reader a /64 or more.
    "TELEMETRY_RATE_LIMIT_IPV6_PREFIX": 64,
    "TELEMETRY_IGNORE_BOTS": True,
    "TELEMETRY_SCRUB_VALUES": True,
    "TELEMETRY_USER_ID_KEY": None,
    "TELEMETRY_HONOR_GPC": True,
}

TELEMETRY_KEYS = tuple(key for key in DEFAULTS if key.startswith("TELEMETRY_"))

# Lines up to PIPE_BUF are written whole by one write(2), even when several
# workers share one pipe; longer ones could interleave.
PIPE_BUF = 4096

# HMAC-SHA256's key is as strong as its block of 64 bytes allows; fewer than
# 32 characters is a password, not a key.
USER_ID_KEY_MIN_CHARS = 32

# scheme://host[:port], as browsers send it in the Origin header.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s*\\^$()\[\]]+/?\Z", re.IGNORECASE)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(RuntimeError):
    """A configuration value the application cannot start with."""


class Secret:
    """A configured secret whose repr and str never show it: a config printed in an error stays safe."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the code that uses it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


def validate_app_config(config: MutableMapping[str, Any]) -> None:
    """Coerce the HTTP limits (environment values arrive as strings); reject bad ones."""
    _integer(config, "MAX_CONTENT_LENGTH", 1, 100 * 1024 * 1024)
    _integer(config, "JSON_MAX_DEPTH", 2, 512)
    _integer(config, "JSON_MAX_CONTAINERS", 16, 1_000_000)
    _integer(config, "JSON_MAX_ITEMS", 16, 1_000_000)
    _integer(config, "TRUSTED_PROXY_HOPS", 0, 10)
    config["CORS_ORIGINS"] = _origins(config, "CORS_ORIGINS")


def validate_telemetry_config(config: MutableMapping[str, Any]) -> None:
    """Coerce and check the TELEMETRY_* settings the EventLogger reads."""
    for key in TELEMETRY_KEYS:
        config.setdefault(key, DEFAULTS[key])
    config["TELEMETRY_ENABLED"] = _boolean(config, "TELEMETRY_ENABLED")
    config["TELEMETRY_IGNORE_BOTS"] = _boolean(config, "TELEMETRY_IGNORE_BOTS")
    config["TELEMETRY_SCRUB_VALUES"] = _boolean(config, "TELEMETRY_SCRUB_VALUES")
    config["TELEMETRY_HONOR_GPC"] = _boolean(config, "TELEMETRY_HONOR_GPC")
    config["TELEMETRY_USER_ID_KEY"] = _user_id_key(config.get("TELEMETRY_USER_ID_KEY"))
    _integer(config, "TELEMETRY_MAX_EVENT_BYTES", 256, PIPE_BUF)
    _integer(config, "TELEMETRY_QUEUE_SIZE", 1, 1_000_000)
    _integer(config, "TELEMETRY_MAX_BATCH_EVENTS", 1, 1000)
    _integer(config, "TELEMETRY_RETRY_AFTER", 1, 3600)
    _integer(config, "TELEMETRY_RATE_LIMIT_IPV6_PREFIX", 32, 128)
    _number(config, "TELEMETRY_STALL_SECONDS", 0.05, 600)
    _number(config, "TELEMETRY_WARN_INTERVAL", 0, 86_400)
    token = config.get("TELEMETRY_INGEST_TOKEN")
    if isinstance(token, int) and not isinstance(token, bool):
        # from_prefixed_env parses an all-digit token as JSON, i.e. an int.
        token = str(token)
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ConfigError("TELEMETRY_INGEST_TOKEN must be a non-empty string when set")
    config["TELEMETRY_INGEST_TOKEN"] = token or None
    path = config.get("TELEMETRY_EVENTS_LOG")
    if path in ("", "-"):
        path = None
    if path is not None:
        _check_writable(str(path))
    config["TELEMETRY_EVENTS_LOG"] = path


def _user_id_key(value: object) -> Secret | None:
    """The pseudonyms' key as a ``Secret``, or None; no message ever quotes it."""
    if isinstance(value, Secret):
        value = value.reveal()
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        # from_prefixed_env parses an all-digit value as JSON, i.e. an int.
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(f"TELEMETRY_USER_ID_KEY must be a string when set, not a {type(value).__name__}")
    if len(value) < USER_ID_KEY_MIN_CHARS:
        raise ConfigError(
            f"TELEMETRY_USER_ID_KEY must be at least {USER_ID_KEY_MIN_CHARS} characters when set "
            f"(it has {len(value)}); generate one with: "
            "python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return Secret(value)


def _boolean(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if value in (0, 1):
        return bool(value)
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _origins(config: Mapping[str, Any], key: str) -> str | list[str]:
    """``"*"``, or a list of exact origins (a string may separate them with commas or spaces)."""
    value = config.get(key, "*")
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f'{key} must be "*" or a list of origins, got {config.get(key)!r}')
    if list(value) == ["*"]:
        return "*"
    for origin in value:
        if not isinstance(origin, str) or not (origin == "null" or _ORIGIN.match(origin)):
            raise ConfigError(
                f"{key} must list origins such as https://textbook.example.org "
                f"(scheme://host[:port], no path), got {origin!r}"
            )
    return [normal_origin(origin) for origin in value]


def normal_origin(origin: str) -> str:
    """An origin as browsers send it: lower case, no trailing slash, no default port."""
    origin = origin.rstrip("/").lower()
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin[: -len(port)]
    return origin


def _integer(config: MutableMapping[str, Any], key: str, low: int, high: int) -> None:
    value = config[key]
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(f"{key} must be an integer, got {config[key]!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    config[key] = value


def _number(config: MutableMapping[str, Any], key: str, low: float, high: float) -> None:
    value = config[key]
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {config[key]!r}") from None
    if isinstance(config[key], bool) or not low <= value <= high:
        raise ConfigError(f"{key} must be a number from {low} to {high}, got {config[key]!r}")
    config[key] = value


def _check_writable(path: str) -> None:
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"TELEMETRY_EVENTS_LOG {path!r} cannot be opened for appending: {exc.strerror or exc}"
        ) from None
