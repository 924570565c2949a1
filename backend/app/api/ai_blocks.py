"""The four AI block routes: validated requests, placeholder answers, one event each."""

from flask import Blueprint, request

from ..analytics.event_logger import get_event_logger
from ..openapi import header_parameter, responds, use_body
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
ANONYMOUS = "anonymous"
_USER_ID_CHARS = 128
_USER_DOC = "Who is reading; recorded on the ai_block_used event (default: anonymous)."

_answer_schema = AnswerSchema()
_explanation_schema = ExplanationSchema()
_quiz_schema = QuizSchema()
_diagram_schema = DiagramSchema()


@bp.post("/ask-question")
@responds(200, AnswerSchema, description="A placeholder answer.")
@header_parameter(USER_HEADER, _USER_DOC)
@use_body(AskQuestionSchema())
def ask_question(body):
    """Answer a reader's question about a section (placeholder)."""
    question = body["question"]
    answer = f"[placeholder] An answer to {question!r} for chapter {body['chapter_id']} will appear here."
    return _reply("ask-question", body, question, _answer_schema, question=question, answer=answer)


@bp.post("/explain-like-10")
@responds(200, ExplanationSchema, description="A placeholder explanation.")
@header_parameter(USER_HEADER, _USER_DOC)
@use_body(ExplainLike10Schema())
def explain_like_10(body):
    """Explain a concept as if to a ten-year-old (placeholder)."""
    concept = body["concept"]
    explanation = f"[placeholder] A simple explanation of {concept!r} will appear here."
    return _reply(
        "explain-like-10", body, concept, _explanation_schema, concept=concept, explanation=explanation
    )


@bp.post("/quiz")
@responds(200, QuizSchema, description="Placeholder quiz questions.")
@header_parameter(USER_HEADER, _USER_DOC)
@use_body(QuizRequestSchema())
def make_quiz(body):
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
@header_parameter(USER_HEADER, _USER_DOC)
@use_body(DiagramRequestSchema())
def draw_diagram(body):
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


def _reply(block_type, body, query, schema, **content):
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
    event = {
        "user_id": _user_id(),
        "chapter_id": body["chapter_id"],
        "block_type": block_type,
        "query": query,
    }
    if "section_id" in body:
        event["section_id"] = body["section_id"]
    get_event_logger().try_log("ai_block_used", event)
    return reply


def _user_id():
    return request.headers.get(USER_HEADER, "").strip()[:_USER_ID_CHARS] or ANONYMOUS
