"""The shell blocks of a Markdown document, and a session that runs them in order.

Conventions (README.md, "Documentation that runs"):

- A fenced block tagged ``sh`` is a command the docs test runs from the
  repository root, with the test's virtualenv first on PATH and no FLASK_*
  variables, as ``bash -e -o pipefail``.
- ``<!-- docs-test: skip (reason) -->`` on the line right above a ``sh``
  block keeps it from running; the reason is required.
- A block with a command line ``[VAR=value ...] gunicorn ... wsgi:app`` is a
  server: it is started in the background on a free loopback port in place
  of 127.0.0.1:8000, and stopped by its process group id at the next server
  block or at the end of the document. Later blocks get that port in place
  of 8000 in ``127.0.0.1:8000`` and ``localhost:8000``.
- A ``text`` or ``json`` block separated from the ``sh`` block above it by
  blank lines only is that command's expected output (stdout and stderr as a
  terminal shows them), compared like a doctest: ``...`` matches anything and
  runs of whitespace are equal.
- A ``python`` block whose first line is ``# file: PATH`` (relative) is a
  file the reader adds to the repository. The session writes it into a copy
  of the repository made of links to it, never into the repository itself,
  and runs every later command block there.
"""

import doctest
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from event_lines import parse_event_line
from gunicorn_server import REPO_ROOT, GunicornServer

DOCS_PORT = "8000"
COMMAND_SECONDS = 60
OUTPUT_TAGS = ("text", "json")

_FENCE = re.compile(r"^```(\S*)\s*$")
_SKIP = re.compile(r"^<!-- docs-test: skip \((?P<reason>[^()]*\S[^()]*)\) -->$")
# A command line (continuations joined) that starts gunicorn, maybe after VAR=value settings.
_SERVER = re.compile(r"^\s*(?:\w+=\S*\s+)*gunicorn\b.*\bwsgi:app\b", re.MULTILINE)
_DOCS_ADDRESS = re.compile(rf"\b(?:127\.0\.0\.1|localhost):{DOCS_PORT}\b")
_FILE = re.compile(r"^# file: (?P<path>\S+)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its tag, text, where it starts and what precedes it."""

    document: str
    line: int
    tag: str
    text: str
    skip_reason: str | None
    follows_block: bool

    @property
    def where(self):
        return f"{self.document}:{self.line}"

    @property
    def file_path(self):
        """The path a ``python`` block's ``# file:`` line gives it, or None."""
        first = self.text.partition("\n")[0]
        match = _FILE.match(first) if self.tag == "python" else None
        return match.group("path") if match else None

    @property
    def is_server(self):
        return bool(_SERVER.search(self.text.replace("\\\n", " ")))


def read_blocks(path):
    """Every fenced block of the Markdown file at ``path``, in order.

    Raises ValueError for a malformed skip marker, one not right above an
    ``sh`` block, or an unclosed fence, so that a typo cannot silently turn a
    skip into a run or a run into nothing.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    name = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
    blocks = []
    index, last_close = 0, None
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if lines[index].lstrip().startswith("<!--") and "docs-test" in lines[index]:
            _check_marker(lines, index, name)
        if not fence:
            index += 1
            continue
        start = index
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            index += 1
        if index == len(lines):
            raise ValueError(f"{name}:{start + 1}: the fenced block is never closed")
        above = lines[start - 1] if start else ""
        marker = _SKIP.match(above)
        between = lines[last_close + 1 : start] if last_close is not None else ["-"]
        blocks.append(
            Block(
                document=name,
                line=start + 1,
                tag=fence.group(1),
                text="\n".join(lines[start + 1 : index]),
                skip_reason=marker.group("reason") if marker else None,
                follows_block=all(not text.strip() for text in between),
            )
        )
        last_close = index
        index += 1
    return blocks


def production_block(path=REPO_ROOT / "README.md"):
    """The README's production command: the one server block that sets PROMETHEUS_MULTIPROC_DIR."""
    (block,) = [block for block in read_blocks(path) if block.is_server and "PROMETHEUS_MULTIPROC_DIR=" in block.text]
    return block


def _check_marker(lines, index, name):
    if not _SKIP.match(lines[index]):
        raise ValueError(
            f"{name}:{index + 1}: write the marker as <!-- docs-test: skip (reason) -->, got {lines[index]!r}"
        )
    below = lines[index + 1] if index + 1 < len(lines) else ""
    if below.strip() != "```sh":
        raise ValueError(f"{name}:{index + 1}: a skip marker must sit right above a ```sh block")


def expected_output(blocks, position):
    """The output block that belongs to the ``sh`` block at ``position``, if any."""
    following = blocks[position + 1] if position + 1 < len(blocks) else None
    if following is not None and following.tag in OUTPUT_TAGS and following.follows_block:
        return following
    return None


def output_matches(expected, actual):
    """Doctest comparison: ``...`` matches anything, whitespace runs are equal."""
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    return doctest.OutputChecker().check_output(expected.strip() + "\n", actual.strip() + "\n", flags)


def command_environment():
    """The environment of a reader who activated the virtualenv and set no FLASK_* variables."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLASK_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # Python's stdout and stderr then interleave as they do on a terminal.
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DocsServer(GunicornServer):
    """A documented server command run through the shell on a free loopback port.

    It runs in its own process group, so that a pipeline (``gunicorn ... |
    grep``) stops as a whole; the group id is the PID of the shell started here.
    """

    def __init__(self, workdir, block):
        super().__init__(workdir, env=command_environment())
        self.block = block
        bound = block.text.replace(f"127.0.0.1:{DOCS_PORT}", "127.0.0.1:0")
        if "127.0.0.1:0" not in bound:
            raise ValueError(f"{block.where}: a server command must bind 127.0.0.1:{DOCS_PORT}")
        self.shell_command = bound

    def command(self):
        return ["bash", "-e", "-o", "pipefail", "-c", self.shell_command]

    def stop(self, timeout=30):
        """SIGTERM the process group, wait until it is empty; SIGKILL what will not go."""
        if self.process is None:
            return None
        group = self.process.pid
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _group_alive(group, self.process) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(group, self.process):
            _signal_group(group, signal.SIGKILL)
        return self.process.wait(5)

    def stdout_lines(self):
        return self.stdout_path.read_text(errors="replace").splitlines()


def _link_entries(source, directory):
    """Link each entry of ``source`` (but .git and caches) into ``directory``."""
    for entry in source.iterdir():
        if entry.name not in (".git", "__pycache__", ".pytest_cache"):
            (directory / entry.name).symlink_to(entry)


def _signal_group(group, signum):
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _group_alive(group, leader):
    leader.poll()  # reap the leader, or it stays in the group as a zombie
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class DocsSession:
    """Runs one document's ``sh`` blocks in order, keeping its latest server up."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.server = None
        self.servers = []
        # The repository, with the document's files added, once a file block ran.
        self.checkout = None

    def add_file(self, block):
        """Write a ``# file:`` block into the linked copy of the repository."""
        relative = Path(block.file_path)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"{block.where}: a file block's path must stay inside the repository")
        if self.checkout is None:
            self.checkout = self.workdir / "checkout"
            self.checkout.mkdir()
            _link_entries(REPO_ROOT, self.checkout)
        directory = self.checkout
        for part in relative.parent.parts:
            directory = directory / part
            if directory.is_symlink():
                # A directory the file goes into becomes real, its other entries still links.
                source = directory.resolve()
                directory.unlink()
                directory.mkdir()
                _link_entries(source, directory)
            directory.mkdir(exist_ok=True)
        target = directory / relative.name
        if target.is_symlink():
            target.unlink()
        target.write_text(block.text + "\n", encoding="utf-8")

    def run(self, block):
        """Run a command block and return its output; a server block starts the server."""
        if block.is_server:
            self.stop_server()
            workdir = self.workdir / f"server-{len(self.servers)}"
            workdir.mkdir()
            self.server = DocsServer(workdir, block)
            self.servers.append(self.server)
            self.server.start()
            return None
        script = block.text
        if _DOCS_ADDRESS.search(script):
            if self.server is None:
                raise AssertionError(f"{block.where} calls port {DOCS_PORT}, but no server block ran first")
            script = _DOCS_ADDRESS.sub(f"127.0.0.1:{self.server.port}", script)
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=self.checkout or REPO_ROOT,
            env=command_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=COMMAND_SECONDS,
            text=True,
        )
        assert result.returncode == 0, (
            f"{block.where} exited with {result.returncode}:\n{block.text}\n--- output ---\n{result.stdout}"
        )
        return result.stdout

    def stop_server(self):
        """Stop the running server; its stdout must hold event lines only (SPEC S6)."""
        server, self.server = self.server, None
        if server is None:
            return
        server.stop()
        for line in server.stdout_lines():
            try:
                parse_event_line(line)
            except ValueError:
                where = server.block.where
                raise AssertionError(f"{where}: stdout carried a non-event line {line!r}") from None

    def close(self):
        self.stop_server()
