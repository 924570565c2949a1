"""Marshmallow schemas for the AI block requests and their placeholder replies."""

from marshmallow import RAISE, Schema, fields, validate

from ..analytics.schemas import BLOCK_TYPES

_ID_LENGTH = validate.Length(min=1, max=128)
_TEXT_LENGTH = validate.Length(min=1, max=2000)


class AiBlockRequestSchema(Schema):
    """Where in the textbook the block sits."""

    class Meta:
        unknown = RAISE

    chapter_id = fields.String(required=True, validate=_ID_LENGTH)
    section_id = fields.String(validate=_ID_LENGTH)


class AskQuestionSchema(AiBlockRequestSchema):
    question = fields.String(required=True, validate=_TEXT_LENGTH)


class ExplainLike10Schema(AiBlockRequestSchema):
    concept = fields.String(required=True, validate=_TEXT_LENGTH)


class QuizRequestSchema(AiBlockRequestSchema):
    num_questions = fields.Integer(strict=True, load_default=3, validate=validate.Range(1, 10))


class DiagramRequestSchema(AiBlockRequestSchema):
    description = fields.String(required=True, validate=_TEXT_LENGTH)


class AiBlockReplySchema(Schema):
    """Common to every AI block reply; ``placeholder`` is true until a model is wired in."""

    placeholder = fields.Boolean(required=True)
    notice = fields.String(required=True)
    block_type = fields.String(required=True, validate=validate.OneOf(BLOCK_TYPES))
    chapter_id = fields.String(required=True)
    section_id = fields.String(required=True, allow_none=True)


class AnswerSchema(AiBlockReplySchema):
    question = fields.String(required=True)
    answer = fields.String(required=True)


class ExplanationSchema(AiBlockReplySchema):
    concept = fields.String(required=True)
    explanation = fields.String(required=True)


class QuizQuestionSchema(Schema):
    question = fields.String(required=True)
    options = fields.List(fields.String(), required=True)
    answer_index = fields.Integer(required=True)


class QuizSchema(AiBlockReplySchema):
    num_questions = fields.Integer(required=True)
    questions = fields.List(fields.Nested(QuizQuestionSchema), required=True)


class DiagramSchema(AiBlockReplySchema):
    description = fields.String(required=True)
    diagram_format = fields.String(required=True, metadata={"enum": ["mermaid"]})
    diagram = fields.String(required=True)
