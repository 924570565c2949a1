"""Value scrubbing: e-mail addresses, tokens, card numbers and URL secrets found inside strings."""

import re
from typing import Any

EMAIL = "[EMAIL]"
CARD = "[CARD]"
REDACTED = "[REDACTED]"

# Query parameters whose values are secrets (S11), matched by exact name, any case.
SECRET_PARAMETERS = (
    "token",
    "access_token",
    "id_token",
    "key",
    "api_key",
    "password",
    "secret",
    "sig",
    "signature",
    "code",
)

# Every kind below needs one of these: "@" (e-mail, URL credentials), "="
# (query parameters), "eyJ" (a JWT's header, base64 of '{"'), "bearer", or
# a run of 13 digits, spaces and dashes (a card number).
_CANDIDATE = re.compile(r"[@=]|eyJ|[Bb][Ee][Aa][Rr][Ee][Rr]\s|\d[\d -]{12}")

# The same test for a whole event line, without a regex (sre tries a pattern
# at every character): bytes.translate gives each byte its class, "0" for
# digits, spaces and dashes, "!" for "@" and "=", letters lower case, anything
# else "."; then four ``in`` tests on the decoded str (str's search is about
# twice as cheap as bytes' here). JSON escaping keeps all of these characters.
_CLASSES = bytes(
    ord("0")
    if byte in b"0123456789 -"
    else ord("!")
    if byte in b"@="
    else byte | 0x20
    if chr(byte).isalpha() and byte < 128
    else ord(".")
    for byte in range(256)
)
_CARD_RUN = "0" * 13
_PAYLOAD_KEY = '"payload":'

# scheme://userinfo@ : everything up to the last "@" of the authority.
_URL_CREDENTIALS = re.compile(r"(?<=[A-Za-z0-9+.-]://)[^\s/?#\[\]@]*(?:@[^\s/?#\[\]@]*)*@(?=[^\s@])")
_SECRET_NAMES = "|".join(SECRET_PARAMETERS)
_SECRET_PARAMETER = re.compile(rf"(?<=[?&#;])({_SECRET_NAMES})=[^&#\s\"'<>]+", re.IGNORECASE)
# Header, payload and signature in base64url; the header always opens with '{"'.
_JWT = re.compile(r"(?<![\w-])eyJ[\w-]+\.[\w-]+\.[\w-]*", re.ASCII)
# A token after "Bearer " is a secret when it could not be an English word:
# it has 8 characters or more of which one is a digit or an underscore, or
# 20 or more ("the bearer of bad news" stays as written).
_BEARER = re.compile(
    r"(?<![\w-])(bearer\s+)(?:(?=[\w.~+/-]*[\d_])[\w.~+/-]{8,}|[\w.~+/-]{20,})=*", re.IGNORECASE | re.ASCII
)
# The local part leaves out the rarely used "/", "=", "?", "&" and "'", so
# that a path, a query or a quote before an address is kept.
_EMAIL = re.compile(r"(?<![\w.!#$%*+^`{|}~-])[\w.!#$%*+^`{|}~-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_][\w-]*[^\W_]")
# 13 to 19 digits, in one run or in groups separated by one space or dash, not
# part of a longer id, word or decimal number; the Luhn check decides.
_CARD = re.compile(r"(?<![\w.-])(?:\d{13,19}|\d{4}(?:[ -]\d{2,6}){2,4})(?![\w-]|\.\d)", re.ASCII)


def payload_classes(line: str) -> str:
    """The class of each character of an event line's payload text, for the pre-checks (see ``_CLASSES``).

    ``line`` is an event's ASCII JSON line; the server's fields before its
    payload (a UUID's digits and dashes look like a card's) are left out.
    """
    return line[line.find(_PAYLOAD_KEY) :].encode("ascii").translate(_CLASSES).decode("ascii")


def may_hold_secrets(classes: str) -> bool:
    """False when no string of the payload whose ``payload_classes`` these are holds anything ``scrub`` replaces."""
    return "!" in classes or "eyj" in classes or "bearer" in classes or _CARD_RUN in classes


def line_may_hold_secrets(line: str) -> bool:
    """False when no string of the event line's payload can hold anything ``scrub`` replaces."""
    return may_hold_secrets(payload_classes(line))


def scrub_text(text: str) -> str:
    """``text`` with every secret and address it holds replaced; ordinary text comes back as it is."""
    if _CANDIDATE.search(text) is None:
        return text
    text = _URL_CREDENTIALS.sub(REDACTED + "@", text)
    text = _SECRET_PARAMETER.sub(lambda match: f"{match.group(1)}={REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda match: match.group(1) + REDACTED, text)
    text = _EMAIL.sub(EMAIL, text)
    return _CARD.sub(_card, text)


def scrub(value: Any) -> Any:
    """A copy of ``value`` (a payload) with every string at any depth scrubbed by ``scrub_text``."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {key: scrub_text(item) if type(item) is str else scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_text(item) if type(item) is str else scrub(item) for item in value]
    return value


def _card(match: re.Match[str]) -> str:
    digits = match.group().replace(" ", "").replace("-", "")
    return CARD if 13 <= len(digits) <= 19 and _luhn_valid(digits) else match.group()


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0
