"""The four AI block routes: validated requests, placeholder answers, one event each."""

from collections.abc import Mapping
from typing import Any

from flask import Blueprint
from marshmallow import Schema

from ..analytics.event_logger import get_event_logger
from ..analytics.payload_rules import ANONYMOUS
from ..analytics.scrubbing import scrubbed_cut
from ..context import this_app, this_request
from ..openapi import View, header_parameter, responds, use_body
from .schemas import (
    AnswerSchema,
    AskQuestionSchema,
    DiagramRequestSchema,
    DiagramSchema,
    ExplainLike10Schema,
    ExplanationSchema,
    QuizRequestSchema,
    QuizSchema,
)

bp = Blueprint("ai_blocks", __name__, url_prefix="/api/ai")


PLACEHOLDER_NOTICE = "Placeholder content: no AI model is called yet."
USER_HEADER = "X-User-Id"
GPC_HEADER = "Sec-GPC"
# The same headers as the WSGI environ names them (PEP 3333), where the view reads them.
USER_ENVIRON, GPC_ENVIRON = ("HTTP_" + name.upper().replace("-", "_") for name in (USER_HEADER, GPC_HEADER))
_USER_ID_CHARS = 128
_USER_DOC = (
    "Who is reading; recorded on the ai_block_used event (default: anonymous), "
    "as a pseudonym when TELEMETRY_USER_ID_KEY is set."
)
_GPC_DOC = (
    "Global Privacy Control: with 1 the answer is the same, and its ai_block_used event is recorded "
    "with user_id anonymous and query null (unless TELEMETRY_HONOR_GPC is false)."
)

_answer_schema = AnswerSchema()
_explanation_schema = ExplanationSchema()
_quiz_schema = QuizSchema()
_diagram_schema = DiagramSchema()


def _reader_headers(view: View) -> View:
    """Document the headers that say who reads and what they allow."""
    return header_parameter(USER_HEADER, _USER_DOC)(header_parameter(GPC_HEADER, _GPC_DOC)(view))


@bp.post("/ask-question")
@responds(200, AnswerSchema, description="A placeholder answer.")
@_reader_headers
@use_body(AskQuestionSchema())
def ask_question(body: Mapping[str, Any]) -> Any:
    """Answer a reader's question about a section (placeholder)."""
    question = body["question"]
    answer = f"[placeholder] An answer to {question!r} for chapter {body['chapter_id']} will appear here."
    return _reply("ask-question", body, question, _answer_schema, question=question, answer=answer)


@bp.post("/explain-like-10")
@responds(200, ExplanationSchema, description="A placeholder explanation.")
@_reader_headers
@use_body(ExplainLike10Schema())
def explain_like_10(body: Mapping[str, Any]) -> Any:
    """Explain a concept as if to a ten-year-old (placeholder)."""
    concept = body["concept"]
    explanation = f"[placeholder] A simple explanation of {concept!r} will appear here."
    return _reply("explain-like-10", body, concept, _explanation_schema, concept=concept, explanation=explanation)


@bp.post("/quiz")
@responds(200, QuizSchema, description="Placeholder quiz questions.")
@_reader_headers
@use_body(QuizRequestSchema())
def make_quiz(body: Mapping[str, Any]) -> Any:
    """Make a short quiz on a chapter or section (placeholder)."""
    count = body["num_questions"]
    questions = [
        {
            "question": f"[placeholder] Question {number} about chapter {body['chapter_id']}?",
            "options": ["Option A", "Option B", "Option C", "Option D"],
            "answer_index": 0,
        }
        for number in range(1, count + 1)
    ]
    return _reply("quiz", body, None, _quiz_schema, num_questions=count, questions=questions)


@bp.post("/diagram")
@responds(200, DiagramSchema, description="A placeholder diagram in Mermaid syntax.")
@_reader_headers
@use_body(DiagramRequestSchema())
def draw_diagram(body: Mapping[str, Any]) -> Any:
    """Draw a diagram from a description (placeholder)."""
    description = body["description"]
    diagram = 'flowchart LR\n  A["placeholder"] --> B["diagram"]'
    return _reply(
        "diagram",
        body,
        description,
        _diagram_schema,
        description=description,
        diagram_format="mermaid",
        diagram=diagram,
    )


def _reply(block_type: str, body: Mapping[str, Any], query: str | None, schema: Schema, **content: Any) -> Any:
    """Record the block's use, then dump its placeholder reply."""
    reply = schema.dump(
        {
            "placeholder": True,
            "notice": PLACEHOLDER_NOTICE,
            "block_type": block_type,
            "chapter_id": body["chapter_id"],
            "section_id": body.get("section_id"),
            **content,
        }
    )
    # The headers as WSGI gives them: one look-up each, not the request's header view.
    environ = this_request().environ
    if _refuses_tracking(environ):
        # Usage is counted; the reader and what they typed are not.
        user_id, query = ANONYMOUS, None
    else:
        scrub = this_app().config["TELEMETRY_SCRUB_VALUES"]
        user_id = scrubbed_cut(environ.get(USER_ENVIRON, "").strip(), _USER_ID_CHARS, scrub) or ANONYMOUS
    event: dict[str, Any] = {
        "user_id": user_id,
        "chapter_id": body["chapter_id"],
        "block_type": block_type,
        "query": query,
    }
    if "section_id" in body:
        event["section_id"] = body["section_id"]
    get_event_logger().try_log("ai_block_used", event)
    return reply


def _refuses_tracking(environ: Mapping[str, Any]) -> bool:
    """The browser sends Global Privacy Control (``Sec-GPC: 1``) and the app honours it."""
    return environ.get(GPC_ENVIRON, "").strip() == "1" and bool(this_app().config["TELEMETRY_HONOR_GPC"])
