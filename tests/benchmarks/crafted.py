"""The most expensive requests an outsider can craft, each against an ordinary one: ``tests/benchmarks/crafted.py``.

SPEC S13: no request costs more than 3x the worker CPU of an ordinary
request with the same body size and event count. Each crafted body is dense
in what a scrubber or the strict JSON parser looks for; its ordinary twin
has the same size and events, made of prose. Both run in process through
the production app's ``wsgi_app`` (no gunicorn, whose HTTP parsing costs the
two the same), interleaved, and the ratio of their CPU times per request is
the median over the rounds. ``--readme`` writes the table into README.md.
"""

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path[:0] = [str(REPO_ROOT / "backend"), str(HERE)]

import setups  # noqa: E402

TARGET = 3.0
README = REPO_ROOT / "README.md"
README_START = "<!-- crafted requests: start (written by tests/benchmarks/crafted.py --readme) -->"
README_END = "<!-- crafted requests: end -->"
LOG, BATCH = setups.LOG.path, setups.BATCH.path
# What a reader's prose looks like to every scrubber: nothing it looks for.
PROSE = "Why is the sky blue? Chapter three says light scatters off the air, see the next section. "
# Just under the line limit (4,096 bytes with the server's fields), and a 100-event batch within 64 KiB.
LINE_TEXT = 3_700
BATCH_EVENTS = 100
BATCH_TEXT = 560
BODY_LIMIT = 64 * 1024
# JSON_MAX_ITEMS: array elements and object members one body may hold (setups.PRODUCTION keeps the default).
ITEM_LIMIT = 2048


def _fill(unit, chars):
    """``unit`` repeated to ``chars`` characters (bytes: whole units only, so that no escape is cut)."""
    if isinstance(unit, bytes):
        return unit * (chars // len(unit))
    return (unit * (chars // len(unit) + 1))[:chars]


def _event(text):
    return {"event_type": "error_event", "payload": {"error_type": "Error", "error_message": text}}


def _log(text):
    return json.dumps(_event(text)).encode()


def _batch(text, events=BATCH_EVENTS):
    return json.dumps({"events": [_event(text)] * events}).encode()


def _json_text(body, chars):
    """``body`` built with a JSON string of ``chars`` characters as they appear in the body (escapes included)."""
    return body.replace(b'"@TEXT@"', b'"' + chars + b'"')


@dataclass
class Case:
    """A crafted request and its ordinary twin: same path, body size and event count."""

    name: str
    path: str
    body: bytes
    ordinary: bytes
    headers: dict = field(default_factory=dict)
    ordinary_headers: dict = field(default_factory=dict)
    unique_user_agent: bool = False


def _scrubber_cases():
    # Units dense in what each scrubber looks for; every one a whole match or a near miss.
    units = {
        '"@" (e-mail, URL credentials)': "a@",
        "URL credentials": "a://@J",
        "e-mail addresses": "a@b.cc ",
        "percent-encoded e-mail": "a.b%40c.de ",
        '"=" (parameters)': "x=y&",
        "secret parameters": "?code=1&",
        "password= in prose": "password=x ",
        "digits and spaces": "1 ",
        "card numbers": "4111111111111111 ",
        "grouped card numbers": "4111 1111 1111 1111 ",
        "Bearer tokens": "Bearer abcdefg1 ",
        "Basic credentials": "Basic QTpCQTpC ",
        "JWT fragments": "eyJa.eyJb ",
        "key prefixes": "AKIAABCDEFGHIJKLMNOP ghp_",
        "every kind at once": "a://@J=eyJ.eyJ bearer x1234567 basic QTpCQTpC AKIA 4111111111111111 ",
    }
    cases = []
    for label, unit in units.items():
        cases.append(
            Case(
                f"/log, one event near the line limit: {label}",
                LOG,
                _log(_fill(unit, LINE_TEXT)),
                _log(_fill(PROSE, LINE_TEXT)),
            )
        )
        cases.append(
            Case(
                f"/batch, 100 events: {label}", BATCH, _batch(_fill(unit, BATCH_TEXT)), _batch(_fill(PROSE, BATCH_TEXT))
            )
        )
    # Many short strings near the line limit: each is scrubbed on its own.
    for label, payload in {
        "400 short e-mail strings": {"x": ["a@b.cc"] * 400},
        "short e-mail strings in 40 arrays": {"x": [["a@b.cc"] * 10] * 40},
        "230 e-mail strings of 14 characters": {"x": ["aaaaaaa@bbb.cc"] * 230},
        "200 card number strings": {"x": ["4111111111111111"] * 200},
    }.items():
        body = json.dumps(_one(payload), separators=(",", ":")).encode()
        cases.append(
            Case(f"/log, one event near the line limit: {label}", LOG, body, _log(_fill(PROSE, len(body) - 70)))
        )
    big = BODY_LIMIT - 200
    cases.append(
        Case(
            '/log, 64 KiB of "a://@J" (a line too large: 413)', LOG, _log(_fill("a://@J", big)), _log(_fill(PROSE, big))
        )
    )
    cases.append(
        Case(
            '/log, 64 KiB list of "@" strings (400: over the item limit)',
            LOG,
            json.dumps({"event_type": "error_event", "payload": {"x": ["@"] * (big // 5)}}).encode(),
            _log(_fill(PROSE, big)),
        )
    )
    return cases


def _parser_cases():
    cases = []
    body = _log("@TEXT@")
    size = LINE_TEXT
    # Escapes are 6 bytes in the body for 1 character: the ordinary twin has the same bytes.
    for label, unit in {
        "\\u escapes": b"\\u00e9",
        "surrogate pairs": b"\\ud83d\\ude00",
        "escaped quotes and backslashes": b'\\"\\\\',
        "brackets in strings": b"[{[{",
    }.items():
        crafted = _json_text(body, _fill(unit, size))
        cases.append(Case(f"/log, a string dense in {label}", LOG, crafted, _log(_fill(PROSE, len(crafted) - 70))))
    depth = 30
    deep = {"event_type": "error_event", "payload": {"x": _nested(depth, "a" * 40)}}
    deep_body = json.dumps(deep).encode()
    cases.append(Case(f"/log, payload nested {depth} deep", LOG, deep_body, _log(_fill(PROSE, len(deep_body) - 70))))
    wide = {"event_type": "error_event", "payload": {f"k{number}": number for number in range(300)}}
    wide_body = json.dumps(wide).encode()
    cases.append(Case("/log, payload of 300 keys", LOG, wide_body, _log(_fill(PROSE, len(wide_body) - 70))))
    # The envelope and the event take four levels of JSON_MAX_DEPTH (32).
    lists = {"events": [{"event_type": "error_event", "payload": {"x": _nested(depth - 3, 1)}}] * BATCH_EVENTS}
    lists_body = json.dumps(lists).encode()
    ordinary = _batch(_fill(PROSE, (len(lists_body) - 8000) // BATCH_EVENTS))
    cases.append(Case(f"/batch, 100 events nested {depth - 3} deep", BATCH, lists_body, ordinary))
    duplicates = (
        b'{"event_type": "error_event", "payload": {' + b", ".join(b'"k": %d' % number for number in range(600)) + b"}}"
    )
    cases.append(Case("/log, 600 duplicate keys (400)", LOG, duplicates, _log(_fill(PROSE, len(duplicates) - 70))))
    return cases


def _nested(depth, leaf):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _items(value):
    """Array elements and object members in ``value``, as JSON_MAX_ITEMS counts them (an empty one counts one)."""
    if isinstance(value, (list, dict)):
        inner = value if isinstance(value, list) else value.values()
        return max(1, len(value)) + sum(_items(item) for item in inner)
    return 0


def _largest(make, envelope):
    """The compact body ``envelope(make(n))`` for the largest n that fits in the body and item limits."""
    low, high = 1, ITEM_LIMIT
    while low < high:
        middle = (low + high + 1) // 2
        value = envelope(make(middle))
        if _items(value) <= ITEM_LIMIT and len(json.dumps(value, separators=(",", ":"))) <= BODY_LIMIT - 64:
            low = middle
        else:
            high = middle - 1
    return json.dumps(envelope(make(low)), separators=(",", ":")).encode()


def _one(payload):
    return {"event_type": "error_event", "payload": payload}


def _hundred(payload):
    return {"events": [_one(payload)] * BATCH_EVENTS}


def _item_cases():
    # As many values as JSON_MAX_ITEMS lets through, each as cheap to send and dear to handle as
    # can be: numbers, floats the line writes shorter than orjson, strings, arrays, objects, keys,
    # and secret-named keys, whose redaction could shrink a line (so its size is not known unread).
    log = {
        "numbers": lambda n: {"x": [1] * n},
        "floats (1e-05)": lambda n: {"x": [1e-05] * n},
        '"@" strings': lambda n: {"x": ["@"] * n},
        "arrays of 60 strings": lambda n: {"x": [["@"] * 60] * (n // 61)},
        "objects of 10 keys": lambda n: {"x": [{f"k{key}": 1 for key in range(10)}] * (n // 11)},
        "keys": lambda n: {f"{key:x}": 1 for key in range(n)},
        "keys and a password key": lambda n: {"password": 1, **{f"{key:x}": 1 for key in range(n)}},
        "keys of strings and a password key": lambda n: {"password": 1, **{f"{key:x}": "a" * 8 for key in range(n)}},
        "numbers and a nested password key": lambda n: {"x": [{"password": 1}] + [1] * n},
        "strings and a nested password key": lambda n: {"x": ["a" * 10] * n + [{"password": 1}]},
        "arrays of numbers and a nested password key": lambda n: {"x": [[1] * 50] * (n // 51) + [{"token": 1}]},
    }
    cases = []
    for label, make in log.items():
        body = _largest(make, _one)
        cases.append(Case(f"/log, {label} up to the item limit (413)", LOG, body, _log(_fill(PROSE, len(body) - 70))))
    # 100 events, each within the line limit, as many values as the item limit leaves each.
    per_event = (ITEM_LIMIT - 1 - BATCH_EVENTS) // BATCH_EVENTS - 3
    batch = {
        "numbers": {"x": [1] * per_event},
        "keys and a password key": {"password": 1, **{f"k{key}": 1 for key in range(per_event - 1)}},
        "objects and a nested token key": {"x": [{"token": 1, "a": 1}] * (per_event // 3)},
    }
    for label, payload in batch.items():
        body = json.dumps(_hundred(payload), separators=(",", ":")).encode()
        text = (len(body) - len(_batch(""))) // BATCH_EVENTS
        cases.append(
            Case(f"/batch, 100 events of {label} up to the item limit", BATCH, body, _batch(_fill(PROSE, text)))
        )
    over = json.dumps(_one({"x": [1] * 30_000}), separators=(",", ":")).encode()
    cases.append(
        Case("/log, 64 KiB of numbers, over the item limit (400)", LOG, over, _log(_fill(PROSE, len(over) - 70)))
    )
    return cases


def _user_agent_cases():
    body = json.dumps(setups.EVENT_BODY).encode()
    return [
        Case("/log, a unique 8 KB User-Agent each request", LOG, body, body, unique_user_agent=True),
    ]


def cases():
    """Every crafted request and its twin."""
    return _scrubber_cases() + _parser_cases() + _item_cases() + _user_agent_cases()


def _app(events_log):
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from app import create_app

    return create_app({**setups.PRODUCTION, "TELEMETRY_EVENTS_LOG": events_log})


def _send(app, path, body, headers):
    statuses = []
    environ = setups.wsgi_environ("POST", path, body, headers)
    answer = app.wsgi_app(environ, lambda status, *_: statuses.append(int(status[:3])))
    b"".join(answer)
    getattr(answer, "close", lambda: None)()
    return statuses[0]


def _user_agents(count, serial):
    # Unique, 8 KB, and nothing the crawler list names.
    return [f"Mozilla/5.0 (X11; Linux x86_64) Reader/{serial}.{n} " + _fill("abcdefgh ", 8000) for n in range(count)]


def _cpu_per_request(app, case, crafted, count, serial):
    path = case.path
    body = case.body if crafted else case.ordinary
    headers = {**setups.HEADERS, **(case.headers if crafted else case.ordinary_headers)}
    agents = _user_agents(count, serial) if crafted and case.unique_user_agent else None
    gc.collect()
    started = time.process_time()
    for number in range(count):
        if agents:
            headers["User-Agent"] = agents[number]
        status = _send(app, path, body, headers)
    return (time.process_time() - started) / count, status


@dataclass
class Result:
    """A case's figures: CPU µs per request, crafted and ordinary, their ratio and range, and the statuses."""

    case: Case
    crafted_us: float
    ordinary_us: float
    ratio: float
    low: float
    high: float
    statuses: tuple


def measure(rounds=5, count=20, progress=print, only=None):
    """Each case ``rounds`` times, crafted then ordinary and the other way round every other round."""
    results = []
    with tempfile.TemporaryDirectory(prefix="telemetry-crafted-") as workdir:
        app = _app(str(Path(workdir) / "events.jsonl"))
        serial = 0
        for case in cases():
            if only and only not in case.name:
                continue
            for crafted in (True, False):  # warm-up
                _cpu_per_request(app, case, crafted, 3, serial := serial + 1)
            ratios, crafted_times, ordinary_times, statuses = [], [], [], set()
            for round_ in range(rounds):
                order = (True, False) if round_ % 2 == 0 else (False, True)
                figures = {}
                for crafted in order:
                    figures[crafted] = _cpu_per_request(app, case, crafted, count, serial := serial + 1)
                (crafted_time, crafted_status), (ordinary_time, ordinary_status) = figures[True], figures[False]
                statuses.add((crafted_status, ordinary_status))
                crafted_times.append(crafted_time)
                ordinary_times.append(ordinary_time)
                ratios.append(crafted_time / ordinary_time)
            result = Result(
                case,
                statistics.median(crafted_times) * 1e6,
                statistics.median(ordinary_times) * 1e6,
                statistics.median(ratios),
                min(ratios),
                max(ratios),
                tuple(sorted(statuses)),
            )
            results.append(result)
            progress(
                f"  {result.ratio:5.2f}x ({result.low:.2f}–{result.high:.2f}) {result.crafted_us:8.0f} µs "
                f"vs {result.ordinary_us:7.0f} µs  {len(case.body):6,} B  {_statuses(result)}  {case.name}"
            )
    return results


def _statuses(result):
    return ", ".join(f"{crafted}/{ordinary}" for crafted, ordinary in result.statuses)


def table(results, run_line):
    """The results as markdown, the worst first."""
    worst = max(results, key=lambda result: result.ratio)
    lines = [
        f"Latest run: {run_line}",
        "",
        f"Worst: **{worst.ratio:.2f}x** ({worst.case.name}); target ≤ {TARGET:g}x: "
        f"{'holds' if worst.ratio <= TARGET else '**does not hold**'}.",
        "",
        "| crafted request | body bytes | crafted µs | ordinary µs | ratio | per-round range | statuses |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in sorted(results, key=lambda result: -result.ratio):
        lines.append(
            f"| {result.case.name} | {len(result.case.body):,} | {result.crafted_us:,.0f} | "
            f"{result.ordinary_us:,.0f} | {result.ratio:.2f} | {result.low:.2f}–{result.high:.2f} "
            f"| {_statuses(result)} |"
        )
    return "\n".join(lines)


def main(argv=None):
    """Measure every case, print the table, then ``worst_ratio=``; exit 1 when the target does not hold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=20, help="requests per case per round")
    parser.add_argument("--only", help="only the cases whose name holds this text")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    options = parser.parse_args(argv)
    load = os.getloadavg()[0]
    started = time.monotonic()
    results = measure(options.rounds, options.count, only=options.only)
    run_line = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; in process, CPU time "
        f"per request, median of {options.rounds} rounds of {options.count}; load average {load:.2f} before; "
        f"{(time.monotonic() - started) / 60:.0f} minutes."
    )
    block = table(results, run_line)
    print()
    print(block)
    worst = max(result.ratio for result in results)
    print(f"worst_ratio={worst:.3g}")
    if options.readme:
        write_readme(block)
    return 0 if worst <= TARGET else 1


def write_readme(block):
    """Put ``block`` in README.md in place of the last one."""
    setups.write_readme_block(README, README_START, README_END, block)


if __name__ == "__main__":
    sys.exit(main())
