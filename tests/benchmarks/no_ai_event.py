"""Benchmark only: the production app whose AI blocks answer and record nothing.

The baseline of "AI block with telemetry ÷ without": the same ``create_app()``
as ``wsgi:app`` (CORS, metrics, the same views and schemas), but each AI
block only dumps its reply: no user id read, no event built, validated,
scrubbed or written. (``TELEMETRY_ENABLED=false`` is no such baseline: it
still validates and encodes every event.)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backend"))

from app import create_app  # noqa: E402
from app.api import ai_blocks  # noqa: E402


def _reply_only(block_type, body, query, schema, **content):
    """``ai_blocks._reply`` without its event: the reply alone."""
    return schema.dump(
        {
            "placeholder": True,
            "notice": ai_blocks.PLACEHOLDER_NOTICE,
            "block_type": block_type,
            "chapter_id": body["chapter_id"],
            "section_id": body.get("section_id"),
            **content,
        }
    )


if not callable(getattr(ai_blocks, "_reply", None)):
    raise RuntimeError("app.api.ai_blocks has no _reply to replace: make this baseline follow the blocks")
ai_blocks._reply = _reply_only
app = create_app()
