"""Route contracts: the schemas a view loads with are the schemas its OpenAPI documents.

``use_body`` loads the request body with a schema and records that schema on
the view; ``responds`` records what the view answers. ``build_spec`` walks the
app's URL map and turns those records into an OpenAPI 3 document, so a
route's documentation cannot drift from its code. A route without a contract
(no ``@responds``) is documented from what is known of it: its method, path,
path parameters and docstring, and an answer marked undocumented; the
document never fails for it (research.md, section 24).
"""

import functools
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema, fields
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule

from .json_body import json_body

OPENAPI_VERSION = "3.0.3"
API_TITLE = "Textbook analytics and telemetry API"
API_VERSION = "1.0.0"
API_DESCRIPTION = "Records textbook analytics events as JSON lines on the event stream."
# As setup.cfg declares it; a proprietary licence has no URL to give.
API_LICENSE = {"name": "Proprietary"}
API_CONTACT = {"name": "The textbook backend's maintainers"}
# Relative: the host that serves the document serves the API, whose paths start with /api.
API_SERVERS = [{"url": "/", "description": "The host that serves this document."}]

# Every operation may fail unexpectedly; every operation with a body (a POST)
# may meet these, 403 when CORS_ORIGINS lists origins and the Origin is not one.
_ALWAYS = (500,)
_BODY_ERRORS = (400, 403, 413, 415, 422)
_BODY_MEDIA_TYPES = ("application/json",)
_DESCRIPTIONS = {
    400: (
        "The body is malformed: its HTTP framing (a bad chunk, trailer or terminator, a body cut short), "
        "its JSON, more arrays and objects than JSON_MAX_CONTAINERS, or more array elements and object members "
        "than JSON_MAX_ITEMS. Nothing was written."
    ),
    403: "The request's Origin is not one of CORS_ORIGINS (when that is a list).",
}
# A view without a contract: its answer is unknown, so it is described as such (x-undocumented marks it).
_UNDOCUMENTED_ANSWER = "The route declares no contract (@responds): its answers are not described."
# werkzeug's <converter(arguments):name> in a rule, and the OpenAPI types of its converters.
_RULE_VARIABLE = re.compile(r"<(?:(?P<converter>[a-zA-Z_]\w*)(?:\([^>]*\))?:)?(?P<name>[a-zA-Z_]\w*)>")
_CONVERTER_TYPES = {"int": "integer", "float": "number"}


class ProblemSchema(Schema):
    """RFC 9457 problem details."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)


class ValidationProblemSchema(ProblemSchema):
    """A problem with per-field messages, shaped like the request body."""

    errors = fields.Dict(required=True)


View = TypeVar("View", bound=Callable[..., Any])


def _contract(view: Callable[..., Any]) -> dict[str, Any]:
    """The contract recorded on ``view`` (its ``openapi`` attribute), made empty on first use."""
    contract: dict[str, Any] = vars(view).setdefault(
        "openapi", {"body": None, "responses": {}, "parameters": [], "security": None}
    )
    return contract


def use_body(
    schema: Schema,
    *,
    documented: Schema | dict[str, Any] | None = None,
    plain_text: bool = False,
    objects_only: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Load the JSON body with ``schema`` and pass the result as the view's first argument.

    ``documented`` is the body's OpenAPI schema where ``schema`` alone does
    not say all the view enforces: a ``oneOf`` of variants whose payload the
    domain code checks, or an envelope whose items the view judges one by one.
    ``plain_text`` also reads a ``text/plain`` body as JSON (browser beacons);
    without ``objects_only`` a JSON value that is not an object is the
    schema's to refuse (422) rather than a 400.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def load_and_call(*args: Any, **kwargs: Any) -> Any:
            return view(schema.load(json_body(plain_text, objects_only)), *args, **kwargs)

        # functools.wraps shares the view's attributes, its contract included.
        contract = _contract(load_and_call)
        contract["body"] = documented or schema
        contract["media_types"] = _BODY_MEDIA_TYPES + (("text/plain",) if plain_text else ())
        return load_and_call

    return decorate


def responds(
    status: int,
    schema: type[Schema] | Schema | dict[str, Any] | None = None,
    *,
    description: str,
    headers: dict[str, Any] | None = None,
    media_type: str | None = None,
) -> Callable[[View], View]:
    """Document one answer of the view; a schema-less 4xx/5xx answer is a problem.

    ``headers`` maps a header name to its OpenAPI header object; ``media_type``
    names a body that is not JSON (``schema`` then describes it).
    """

    def decorate(view: View) -> View:
        _contract(view)["responses"][status] = (schema, description, headers or {}, media_type)
        return view

    return decorate


def header_parameter(name: str, description: str) -> Callable[[View], View]:
    """Document a request header the view reads."""

    def decorate(view: View) -> View:
        _contract(view)["parameters"].append(
            {"in": "header", "name": name, "required": False, "schema": {"type": "string"}, "description": description}
        )
        return view

    return decorate


def bearer_auth(view: View) -> View:
    """Document that the view may require ``Authorization: Bearer <token>``."""
    _contract(view)["security"] = [{}, {"bearerAuth": []}]
    return view


# The API, and the metrics that operators scrape beside it.
DOCUMENTED_PREFIXES = ("/api", "/metrics")


def build_spec(app: Flask, path_prefixes: tuple[str, ...] = DOCUMENTED_PREFIXES) -> dict[str, Any]:
    """The OpenAPI document for every route under one of ``path_prefixes``."""
    marshmallow_plugin = MarshmallowPlugin()
    spec = APISpec(
        title=API_TITLE,
        version=API_VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[marshmallow_plugin],
        info={"description": API_DESCRIPTION, "license": API_LICENSE, "contact": API_CONTACT},
        servers=API_SERVERS,
    )
    converter = marshmallow_plugin.converter
    assert converter is not None, "APISpec sets up its plugins' converters"
    # apispec leaves add_attribute_function unannotated.
    converter.add_attribute_function(_null_branch_admits_only_null)  # type: ignore[no-untyped-call]
    spec.components.schema("Problem", schema=ProblemSchema)
    spec.components.schema("ValidationProblem", schema=ValidationProblemSchema)
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    rules = sorted(
        (rule for rule in app.url_map.iter_rules() if rule.rule.startswith(tuple(path_prefixes))),
        key=lambda rule: rule.rule,
    )
    for tag in sorted({_tag(rule.endpoint) for rule in rules}):
        spec.tag({"name": tag, "description": _tag_description(app, tag)})
    for rule in rules:
        view = app.view_functions[rule.endpoint]
        # Every rule of Flask's URL map has its methods; a bare werkzeug Rule may not.
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        # A view serving several methods gets one operationId per method: they must be unique.
        operations = {
            method.lower(): _operation(view, rule, f"_{method.lower()}" if len(methods) > 1 else "")
            for method in methods
        }
        spec.path(path=_RULE_VARIABLE.sub(r"{\g<name>}", rule.rule), operations=operations)
    return spec.to_dict()


def _tag(endpoint: str) -> str:
    """An operation's tag: the blueprint that serves it."""
    return endpoint.split(".")[0]


def _tag_description(app: Flask, tag: str) -> str:
    """The first line of the docstring of the blueprint's module."""
    blueprint = app.blueprints.get(tag)
    module = sys.modules.get(blueprint.import_name) if blueprint is not None else None
    doc = inspect.getdoc(module) if module is not None else None
    return doc.splitlines()[0] if doc else f"The {tag} routes."


def _null_branch_admits_only_null(converter: Any, field: fields.Field[Any], ret: dict[str, Any]) -> dict[str, Any]:
    """Pin the null branch apispec writes for a nullable Nested field to null itself.

    For OpenAPI 3.0 apispec documents ``Nested(..., allow_none=True)`` as
    ``anyOf: [{type: object, nullable: true}, {$ref: ...}]``. Under 3.0.3's
    nullable semantics that first branch admits every object, so the document
    would accept payloads the schema rejects; ``enum: [null]`` admits null only.
    """
    branches = ret.get("anyOf")
    if not field.allow_none or not branches:
        return {}
    pinned = [{**branch, "enum": [None]} if branch.get("nullable") else branch for branch in branches]
    return {"anyOf": pinned}


def _operation(view: Callable[..., Any], rule: Rule, id_suffix: str) -> dict[str, Any]:
    endpoint = rule.endpoint
    contract = getattr(view, "openapi", None)
    description = inspect.cleandoc(view.__doc__ or endpoint)
    operation: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_") + id_suffix,
        "summary": description.splitlines()[0],
        "description": description,
        "tags": [_tag(endpoint)],
    }
    if contract is None:
        contract = {"body": None, "responses": {}, "parameters": [], "security": None}
        operation["x-undocumented"] = True
        operation["responses"] = {"default": {"description": _UNDOCUMENTED_ANSWER}}
    path_parameters = _path_parameters(rule)
    if path_parameters:
        operation["parameters"] = path_parameters
    statuses = dict(contract["responses"])
    if contract["body"] is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {media_type: {"schema": contract["body"]} for media_type in contract["media_types"]},
        }
        for status in _BODY_ERRORS:
            statuses.setdefault(status, (None, None, {}, None))
    for status in _ALWAYS:
        statuses.setdefault(status, (None, None, {}, None))
    if contract["parameters"]:
        operation["parameters"] = path_parameters + contract["parameters"]
    # An empty list says "public" outright, where no security at all would leave it unsaid.
    operation["security"] = contract["security"] if contract["security"] is not None else []
    operation.setdefault("responses", {}).update(
        {str(status): _response(status, *statuses[status]) for status in sorted(statuses)}
    )
    return operation


def _path_parameters(rule: Rule) -> list[dict[str, Any]]:
    """The rule's variables (``<int:chapter>``) as OpenAPI path parameters."""
    return [
        {
            "in": "path",
            "name": variable["name"],
            "required": True,
            "schema": {"type": _CONVERTER_TYPES.get(variable["converter"], "string")},
        }
        for variable in _RULE_VARIABLE.finditer(rule.rule)
    ]


def _response(
    status: int,
    schema: type[Schema] | Schema | dict[str, Any] | None,
    description: str | None,
    headers: dict[str, Any],
    media_type: str | None,
) -> dict[str, Any]:
    if schema is None and status >= 400:
        schema = ValidationProblemSchema if status == 422 else ProblemSchema
    if media_type is None:
        is_problem = isinstance(schema, type) and issubclass(schema, ProblemSchema)
        media_type = "application/problem+json" if is_problem else "application/json"
    response: dict[str, Any] = {"description": description or _DESCRIPTIONS.get(status) or HTTP_STATUS_CODES[status]}
    if schema is not None:
        response["content"] = {media_type: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response
