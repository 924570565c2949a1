"""Value scrubbing: e-mail addresses, credentials, keys, card numbers and URL secrets found inside strings."""

import binascii
import re
from typing import Any

EMAIL = "[EMAIL]"
CARD = "[CARD]"
REDACTED = "[REDACTED]"

# Query parameters whose values are secrets (S11), matched by exact name, any case: OAuth 2.0 and
# OpenID Connect's credentials, and the signatures and credentials of presigned URLs (AWS
# SigV4, Google Cloud Storage V4, Azure shared access signatures' ``sig``).
SECRET_PARAMETERS = (
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "client_secret",
    "client_assertion",
    "code_verifier",
    "device_code",
    "key",
    "api_key",
    "apikey",
    "password",
    "passwd",
    "secret",
    "sig",
    "signature",
    "code",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
)
# The same names outside a URL (``password=hunter2`` in prose): only those that name nothing
# but a secret, so that "code=404" or "key=value" in an error message stay as written.
SECRET_ASSIGNMENTS = frozenset(
    name
    for name in SECRET_PARAMETERS
    if name not in {"key", "code", "sig", "signature", "x-amz-credential", "x-goog-credential"}
)

# The same test for a whole event line, without a regex (sre tries a pattern
# at every character): bytes.translate gives each byte its class, "0" for
# digits, spaces and dashes, "!" for "@" and "=", "%" and "_" for themselves,
# letters lower case, anything else "."; then ``in`` tests on the decoded str
# (str's search is about twice as cheap as bytes' here). JSON escaping keeps
# all of these characters.
_CLASSES = bytes(
    ord("0")
    if byte in b"0123456789 -"
    else ord("!")
    if byte in b"@="
    else byte
    if byte in b"%_"
    else byte | 0x20
    if chr(byte).isalpha() and byte < 128
    else ord(".")
    for byte in range(256)
)
_CARD_RUN = "0" * 13
# No secret scrub_text finds is shorter ("a@b.cd", "key=1", "sig=1" are the shortest).
_SHORTEST_SECRET = 5
# "Basic " and 8 characters; a Bearer token, or a key by its prefix ("xoxb-" and 10), is longer.
_SHORTEST_CREDENTIAL = 14
_SHORTEST_CARD = 13
_PAYLOAD_KEY = '"payload":'

# scheme://userinfo@ : everything up to the last "@" of the authority.
# Each pattern opens with what it cannot do without (a literal or a class of characters), before
# any look-behind, so that sre skips the rest of the text at C speed.
_URL_CREDENTIALS = re.compile(r"://(?<=[A-Za-z0-9+.-]://)(?:[^\s/?#\[\]@]*+@)++(?=[^\s@])")
# "=" after a secret's name, and its value. In a query (after "?", "&", "#" or ";") every name
# of SECRET_PARAMETERS, in prose those of SECRET_ASSIGNMENTS: there a value stops before the
# punctuation that ends a sentence. Looks behind the "=" (fixed widths, one a name) rather than
# ahead of the name, so that sre finds each "=" at C speed and tries the names only there.
_NAMES_BY_LAST_LETTER: dict[str, list[str]] = {}
for _name in SECRET_PARAMETERS:
    _NAMES_BY_LAST_LETTER.setdefault(_name[-1], []).append(_name)
# Grouped by their last letter, so that an "=" after any other letter costs one look.
_SECRET_NAME_BEFORE = "|".join(
    f"(?<={letter}=)(?:"
    + "|".join(
        f"(?<={re.escape(name)}=)(?<![\\w-]{re.escape(name)}=)"
        if name in SECRET_ASSIGNMENTS
        else f"(?<=[?&#;]{re.escape(name)}=)"
        for name in names
    )
    + ")"
    for letter, names in _NAMES_BY_LAST_LETTER.items()
)
_ASSIGNMENT = re.compile(f"=(?:{_SECRET_NAME_BEFORE})" + r"""([^&#\s"'<>]*[^&#\s"'<>.,;:!?)\]}])""", re.IGNORECASE)
# Header, claims and signature in base64url; the header always opens with '{"', and so do the
# claims: a token cut inside its claims (no signature left) is still one.
_JWT = re.compile(r"eyJ(?<![\w-]eyJ)[\w-]+\.(?:eyJ[\w-]*(?:\.[\w-]*)?|[\w-]+\.[\w-]*)", re.ASCII)
# A token after "Bearer " is a secret when it could not be an English word:
# it has 8 characters or more of which one is a digit or an underscore, or
# 20 or more ("the bearer of bad news" stays as written).
_BEARER = re.compile(
    r"([Bb](?<![\w-][Bb])[Ee][Aa][Rr][Ee][Rr]\s+)(?:(?=[\w.~+/-]*[\d_])[\w.~+/-]{8,}|[\w.~+/-]{20,})=*", re.ASCII
)
# "Basic " and base64 (RFC 7617), 8 characters or more (a user id and a password of six in
# all): a secret when it decodes to "user:password" (see _basic).
_BASIC = re.compile(r"([Bb](?<![\w-][Bb])[Aa][Ss][Ii][Cc]\s+)([A-Za-z0-9+/]{8,}={0,2})(?![\w+/=-])", re.ASCII)
# Keys by the prefixes their issuers document: AWS access key ids, GitHub tokens (classic and
# fine-grained), Stripe live secret and restricted keys, Google API keys, Slack tokens. Each
# branch opens with a literal, so that sre skips to the letters they open with.
_PREFIXED_KEY = re.compile(
    "|".join(
        f"{prefix}(?<![\\w-]{prefix}){rest}"
        for prefix, rest in (
            ("AKIA", "[0-9A-Z]{16}"),
            ("ASIA", "[0-9A-Z]{16}"),
            ("gh[pousr]_", "[A-Za-z0-9]{36}"),
            ("github_pat_", "\\w{22,}"),
            ("rk_live_", "[0-9A-Za-z]{24,}"),
            ("sk_live_", "[0-9A-Za-z]{24,}"),
            ("AIza", "[\\w-]{35}"),
            ("xox[abposr]-", "[0-9A-Za-z-]{10,}"),
        )
    ),
    re.ASCII,
)
# The local part leaves out the rarely used "/", "=", "?", "&" and "'", so
# that a path, a query or a quote before an address is kept. "%40" is an "@"
# percent-encoded (a query string, a link). A pattern that opens with the
# local part would be tried at every letter of the text; so the "@" and the
# domain are found first (_EMAIL_DOMAIN, which opens with "@", or "%40") and
# marked, then the local part before each mark is found from the mark,
# in the text reversed (_REVERSED_LOCAL_PART, which opens with the mark).
_LOCAL = r"[\w.!#$%*+^`{|}~-]"
# Labels of letters and digits, "-" or "_" only inside; possessive where giving back cannot help.
_DOMAIN = r"(?:[^\W_]++(?:[_-]++[^\W_]++)*+\.)+[^\W\d_](?:[_-]*+[^\W_])++"
_EMAIL_DOMAIN = re.compile(rf"@(?<={_LOCAL}@){_DOMAIN}")
# Apart: a pattern that opens with one of two literals costs three times more a try.
_ENCODED_EMAIL_DOMAIN = re.compile(rf"%40(?<={_LOCAL}%40){_DOMAIN}")
_MARK = "\x00"
# Up to this length _EMAIL, tried at each character, costs less than the two passes (measured).
_SHORT_TEXT = 24
_REVERSED_LOCAL_PART = re.compile(rf"{_MARK}{_LOCAL}*+")
_REVERSED_EMAIL = EMAIL[::-1]
# The same in one pattern, for a text that holds the mark already.
_EMAIL = re.compile(rf"{_LOCAL}(?<!{_LOCAL}.){_LOCAL}*(?:@|%40){_DOMAIN}")
_EMAIL_PATTERNS = (_EMAIL, _EMAIL_DOMAIN, _ENCODED_EMAIL_DOMAIN, _REVERSED_LOCAL_PART)
_ASCII_EMAIL_PATTERNS = tuple(re.compile(pattern.pattern, re.ASCII) for pattern in _EMAIL_PATTERNS)
# 13 to 19 digits, in one run or in groups separated by one space or dash, not
# part of a longer id, word or decimal number, nor after "+" (a phone number as E.164 writes
# it); the networks' ranges and the Luhn check decide.
_CARD = re.compile(r"\d(?<![\w.+-]\d)(?:\d{12,18}|\d{3}(?:[ -]\d{2,6}){2,4})(?![\w-]|\.\d)", re.ASCII)

# The card networks' issuer ranges (IIN prefixes, first and last) and the lengths of their
# numbers, as the networks publish them: a Luhn-valid run of digits is a card number only when
# one of them issues numbers that start and are as long as it is.
_SIXTEEN_TO_NINETEEN = (16, 17, 18, 19)
_CARD_NETWORKS = (
    ("Visa", "4", "4", (13, 16, 19)),
    ("Mastercard", "51", "55", (16,)),
    ("Mastercard", "2221", "2720", (16,)),
    ("American Express", "34", "34", (15,)),
    ("American Express", "37", "37", (15,)),
    ("Discover", "6011", "6011", _SIXTEEN_TO_NINETEEN),
    ("Discover", "644", "649", _SIXTEEN_TO_NINETEEN),
    ("Discover", "65", "65", _SIXTEEN_TO_NINETEEN),
    ("Diners Club", "300", "305", (14, *_SIXTEEN_TO_NINETEEN)),
    ("Diners Club", "3095", "3095", (14, *_SIXTEEN_TO_NINETEEN)),
    ("Diners Club", "36", "36", (14, *_SIXTEEN_TO_NINETEEN)),
    ("Diners Club", "38", "39", (14, *_SIXTEEN_TO_NINETEEN)),
    ("JCB", "3528", "3589", _SIXTEEN_TO_NINETEEN),
    ("UnionPay", "62", "62", _SIXTEEN_TO_NINETEEN),
    ("UnionPay", "81", "81", _SIXTEEN_TO_NINETEEN),
    ("Maestro", "5018", "5018", (13, 14, 15, *_SIXTEEN_TO_NINETEEN)),
    ("Maestro", "5020", "5020", (13, 14, 15, *_SIXTEEN_TO_NINETEEN)),
    ("Maestro", "5038", "5038", (13, 14, 15, *_SIXTEEN_TO_NINETEEN)),
    ("Maestro", "5893", "5893", (13, 14, 15, *_SIXTEEN_TO_NINETEEN)),
    ("Maestro", "6304", "6304", (13, 14, 15, *_SIXTEEN_TO_NINETEEN)),
    ("Maestro", "6759", "6759", (13, 14, 15, *_SIXTEEN_TO_NINETEEN)),
    ("Maestro", "6761", "6763", (13, 14, 15, *_SIXTEEN_TO_NINETEEN)),
    ("Mir", "2200", "2204", _SIXTEEN_TO_NINETEEN),
    ("RuPay", "60", "60", (16,)),
    ("RuPay", "508", "508", (16,)),
    ("RuPay", "353", "353", (16,)),
    ("RuPay", "356", "356", (16,)),
    ("RuPay", "82", "82", (16,)),
    ("Verve", "506099", "506198", (16, 18, 19)),
    ("Verve", "507865", "507964", (16, 18, 19)),
    ("Verve", "650002", "650027", (16, 18, 19)),
    ("Troy", "9792", "9792", (16,)),
    ("Dankort", "5019", "5019", (16,)),
    ("InterPayment", "636", "636", _SIXTEEN_TO_NINETEEN),
    ("Elo", "5066", "5067", (16,)),
    ("Elo", "509", "509", (16,)),
    ("Elo", "627780", "627780", (16,)),
    ("Hipercard", "606282", "606282", (16,)),
    ("Hipercard", "3841", "3841", (16, 19)),
    ("UATP", "1", "1", (15,)),
)


def _issued_prefixes(length: int) -> tuple[tuple[int, frozenset[str]], ...]:
    """The prefixes that numbers of ``length`` digits can start with, by prefix size: a few set look-ups a number."""
    by_size: dict[int, set[str]] = {}
    for _, first, last, lengths in _CARD_NETWORKS:
        if length in lengths:
            size = len(first)
            by_size.setdefault(size, set()).update(f"{n:0{size}d}" for n in range(int(first), int(last) + 1))
    return tuple((size, frozenset(issued)) for size, issued in sorted(by_size.items()))


_CARD_PREFIXES = {length: _issued_prefixes(length) for length in range(13, 20)}


def payload_classes(line: str) -> str:
    """The class of each character of an event line's payload text, for the pre-checks (see ``_CLASSES``).

    ``line`` is an event's ASCII JSON line; the server's fields before its
    payload (a UUID's digits and dashes look like a card's) are left out.
    """
    return line[line.find(_PAYLOAD_KEY) :].encode("ascii").translate(_CLASSES).decode("ascii")


def may_hold_secrets(classes: str) -> bool:
    """False when no string of the payload whose ``payload_classes`` these are holds anything ``scrub`` replaces."""
    # Written out: a generator over the keys' prefixes costs twice as much. Their letters are
    # lower case here, so "Asia" in prose costs a walk that changes nothing.
    return (
        "!" in classes
        or "%00" in classes
        or "eyj" in classes
        or "bearer" in classes
        or "basic" in classes
        or _CARD_RUN in classes
        or "akia" in classes
        or "asia" in classes
        or "aiza" in classes
        or "gh" in classes
        and (
            "ghp_" in classes
            or "gho_" in classes
            or "ghu_" in classes
            or "ghs_" in classes
            or "ghr_" in classes
            or "github_pat_" in classes
        )
        or "k_live_" in classes
        or "xox" in classes
    )


def line_may_hold_secrets(line: str) -> bool:
    """False when no string of the event line's payload can hold anything ``scrub`` replaces."""
    return may_hold_secrets(payload_classes(line))


def scrub_text(text: str) -> str:
    """``text`` with every secret and address it holds replaced; ordinary text comes back as it is."""
    if len(text) < _SHORTEST_SECRET:
        return text
    # Each pass runs only where its kind can be: a look for a character costs far less than a pass.
    if "://" in text:
        text = _URL_CREDENTIALS.sub("://" + REDACTED + "@", text)
    if "=" in text:
        text = _ASSIGNMENT.sub("=" + REDACTED, text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    # Shorter texts hold no credentials or keys: a payload may hold hundreds of short strings.
    if len(text) >= _SHORTEST_CREDENTIAL:
        lowered = text.lower()
        if "bearer" in lowered:
            text = _BEARER.sub(_bearer, text)
        if "basic" in lowered:
            text = _BASIC.sub(_basic, text)
        if (
            "AKIA" in text
            or "ASIA" in text
            or "AIza" in text
            or "gh" in text
            and (
                "ghp_" in text
                or "gho_" in text
                or "ghu_" in text
                or "ghs_" in text
                or "ghr_" in text
                or "github_pat_" in text
            )
            or "k_live_" in text
            or "xox" in text
        ):
            text = _PREFIXED_KEY.sub(REDACTED, text)
    if "@" in text or "%40" in text:
        text = _emails_scrubbed(text)
    return _CARD.sub(_card, text) if len(text) >= _SHORTEST_CARD else text


def _emails_scrubbed(text: str) -> str:
    # On ASCII text the patterns compiled for ASCII match the same and cost a fifth less.
    email, email_domain, encoded_email_domain, reversed_local_part = (
        _ASCII_EMAIL_PATTERNS if text.isascii() else _EMAIL_PATTERNS
    )
    # A short text with one "@" costs the one pattern less than the marks and the reversals
    # (0.39 µs against 0.83 for "a@b.cd"): a payload may hold hundreds of short strings. With
    # one address at most, both find the same; two side by side, the one pattern may not.
    if _MARK in text or len(text) <= _SHORT_TEXT and text.count("@") + text.count("%40") == 1:
        return email.sub(EMAIL, text)
    marked, found = email_domain.subn(_MARK, text) if "@" in text else (text, 0)
    if "%40" in marked:
        marked, encoded = encoded_email_domain.subn(_MARK, marked)
        found += encoded
    if not found:
        return text
    return reversed_local_part.sub(_REVERSED_EMAIL, marked[::-1])[::-1]


def scrubbed_cut(text: str, chars: int, scrub: bool = True) -> str:
    """``text`` within ``chars`` characters, scrubbed before it is cut when ``scrub`` (``TELEMETRY_SCRUB_VALUES``).

    A token cut short no longer looks like one: the scrubber must see it whole
    (SPEC S11). A text that needs no cut comes back as it is: the event
    logger scrubs it whole.
    """
    if len(text) <= chars:
        return text
    return scrub_text(text)[:chars] if scrub else text[:chars]


def scrub(value: Any) -> Any:
    """A copy of ``value`` (a payload) with every string at any depth scrubbed by ``scrub_text``."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {key: scrub_text(item) if type(item) is str else scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_text(item) if type(item) is str else scrub(item) for item in value]
    return value


def _bearer(match: re.Match[str]) -> str:
    return match[1] + REDACTED


def _basic(match: re.Match[str]) -> str:
    encoded = match[2]
    if len(encoded) % 4:
        encoded += "=" * (-len(encoded) % 4)
    try:
        decoded = binascii.a2b_base64(encoded)
    except binascii.Error:
        return match[0]
    # RFC 7617: the credentials are "user-id:password"; an English word after "basic" decodes to no colon.
    return match[1] + REDACTED if b":" in decoded else match[0]


def _card(match: re.Match[str]) -> str:
    text = match[0]
    return CARD if is_card_number(text if text.isdigit() else text.replace(" ", "").replace("-", "")) else text


def is_card_number(digits: str) -> bool:
    """True when ``digits`` lie in a card network's issuer range, have one of its lengths and pass the Luhn check."""
    for size, issued in _CARD_PREFIXES.get(len(digits), ()):
        if digits[:size] in issued:
            # Luhn: from the right, every second digit doubled (its digits summed); bytes add up in C.
            encoded = digits.encode()
            total = sum(encoded[-1::-2]) + sum(encoded[-2::-2].translate(_LUHN_DOUBLED))
            return (total - 48 * len(encoded)) % 10 == 0
    return False


_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")
