"""The README and the quickstart run: every ``sh`` block works and prints what the docs say."""

import re

import pytest
from doc_commands import DocsSession, expected_output, output_matches, read_blocks
from gunicorn_server import REPO_ROOT

DOCUMENTS = ["README.md", "specs/059-analytics-telemetry/quickstart.md"]


@pytest.mark.gunicorn
@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_command_in_the_document_works(document, tmp_path):
    blocks = read_blocks(REPO_ROOT / document)
    session = DocsSession(tmp_path)
    ran = 0
    try:
        for position, block in enumerate(blocks):
            if block.file_path:
                session.add_file(block)
                continue
            if block.tag != "sh" or block.skip_reason:
                continue
            output = session.run(block)
            ran += 1
            expected = expected_output(blocks, position)
            if expected is not None and output is not None:
                assert output_matches(expected.text, output), (
                    f"{block.where} printed:\n{output}\nbut {expected.where} expects:\n{expected.text}"
                )
    finally:
        session.close()
    assert ran, f"{document} has no sh block that runs"


def test_few_commands_are_skipped():
    for document in DOCUMENTS:
        commands = [block for block in read_blocks(REPO_ROOT / document) if block.tag == "sh"]
        skipped = [block for block in commands if block.skip_reason]
        assert len(skipped) * 2 < len(commands), f"{document} skips most of its commands"


def test_readme_test_command_is_what_ci_runs():
    ci_command = (REPO_ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    commands = [block.text.strip() for block in read_blocks(REPO_ROOT / "README.md") if block.tag == "sh"]

    assert ci_command in commands


@pytest.mark.parametrize(
    ("markdown", "problem"),
    [
        ("<!-- docs-test: skip -->\n```sh\nls\n```\n", "write the marker as"),
        ("<!-- docs-test: skip () -->\n```sh\nls\n```\n", "write the marker as"),
        ("<!-- docs-test: skip (slow) -->\n\n```sh\nls\n```\n", "right above a ```sh block"),
        ("<!-- docs-test: skip (output) -->\n```text\nls\n```\n", "right above a ```sh block"),
        ("```sh\nls\n", "never closed"),
    ],
)
def test_malformed_markers_are_errors_not_silent_runs(tmp_path, markdown, problem):
    document = tmp_path / "doc.md"
    document.write_text(markdown)

    with pytest.raises(ValueError, match=re.escape(problem)):
        read_blocks(document)


def test_output_block_belongs_to_the_command_right_above_it(tmp_path):
    document = tmp_path / "doc.md"
    document.write_text("```sh\necho 1\n```\n\n```text\n1\n```\nProse.\n```sh\necho 2\n```\nProse.\n```text\n2\n```\n")
    blocks = read_blocks(document)

    assert expected_output(blocks, 0) is blocks[1]
    assert expected_output(blocks, 2) is None
    assert output_matches('{"id":"...","n":1}', '{"id":"5c1f","n":1}\n')
    assert not output_matches('{"id":"...","n":1}', '{"id":"5c1f","n":2}')


def test_file_blocks_are_written_beside_the_repository_never_into_it(tmp_path):
    document = tmp_path / "doc.md"
    document.write_text(
        "```python\n# file: tests/test_docs_example.py\nANSWER = 42\n```\n\n"
        "```sh\ncat tests/test_docs_example.py && ls tests/conftest.py\n```\n"
    )
    blocks = read_blocks(document)
    session = DocsSession(tmp_path)

    session.add_file(blocks[0])
    output = session.run(blocks[1])

    assert output == "# file: tests/test_docs_example.py\nANSWER = 42\ntests/conftest.py\n"
    assert not (REPO_ROOT / "tests/test_docs_example.py").exists()
    assert (REPO_ROOT / "tests").is_dir() and not (REPO_ROOT / "tests").is_symlink()


@pytest.mark.parametrize(
    ("command", "is_server"),
    [
        ("gunicorn --bind 127.0.0.1:8000 --workers 2 wsgi:app", True),
        ("# preloaded\nFLASK_TELEMETRY_ENABLED=0 gunicorn -b 127.0.0.1:8000 \\\n  --preload wsgi:app", True),
        ("gunicorn --bind 127.0.0.1:8000 wsgi:app | grep --line-buffered chapter_visit", True),
        ("flask --app wsgi routes", False),
        ("curl -sS http://127.0.0.1:8000/api/telemetry/health  # served by gunicorn wsgi:app", False),
    ],
)
def test_server_blocks_are_recognised(tmp_path, command, is_server):
    document = tmp_path / "doc.md"
    document.write_text(f"```sh\n{command}\n```\n")

    (block,) = read_blocks(document)
    assert block.is_server is is_server
