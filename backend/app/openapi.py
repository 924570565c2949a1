"""Route contracts: the schemas a view loads with are the schemas its OpenAPI documents.

``use_body`` loads the request body with a schema and records that schema on
the view; ``responds`` records what the view answers. ``build_spec`` walks the
app's URL map and turns those records into an OpenAPI 3 document, so a route
cannot exist undocumented and its documentation cannot drift from its code.
"""

import functools
import inspect
import sys

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields
from werkzeug.http import HTTP_STATUS_CODES

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
        "its JSON, or more arrays and objects than JSON_MAX_CONTAINERS. Nothing was written."
    ),
    403: "The request's Origin is not one of CORS_ORIGINS (when that is a list).",
}


class ProblemSchema(Schema):
    """RFC 9457 problem details."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)


class ValidationProblemSchema(ProblemSchema):
    """A problem with per-field messages, shaped like the request body."""

    errors = fields.Dict(required=True)


def _contract(view):
    if not hasattr(view, "openapi"):
        view.openapi = {"body": None, "responses": {}, "parameters": [], "security": None}
    return view.openapi


def use_body(schema, *, documented=None, plain_text=False, objects_only=True):
    """Load the JSON body with ``schema`` and pass the result as the view's first argument.

    ``documented`` is the body's OpenAPI schema where ``schema`` alone does
    not say all the view enforces: a ``oneOf`` of variants whose payload the
    domain code checks, or an envelope whose items the view judges one by one.
    ``plain_text`` also reads a ``text/plain`` body as JSON (browser beacons);
    without ``objects_only`` a JSON value that is not an object is the
    schema's to refuse (422) rather than a 400.
    """

    def decorate(view):
        @functools.wraps(view)
        def load_and_call(*args, **kwargs):
            return view(schema.load(json_body(plain_text, objects_only)), *args, **kwargs)

        # functools.wraps shares the view's attributes, its contract included.
        contract = _contract(load_and_call)
        contract["body"] = documented or schema
        contract["media_types"] = _BODY_MEDIA_TYPES + (("text/plain",) if plain_text else ())
        return load_and_call

    return decorate


def responds(status, schema=None, *, description, headers=None, media_type=None):
    """Document one answer of the view; a schema-less 4xx/5xx answer is a problem.

    ``headers`` maps a header name to its OpenAPI header object; ``media_type``
    names a body that is not JSON (``schema`` then describes it).
    """

    def decorate(view):
        _contract(view)["responses"][status] = (schema, description, headers or {}, media_type)
        return view

    return decorate


def header_parameter(name, description):
    """Document a request header the view reads."""

    def decorate(view):
        _contract(view)["parameters"].append(
            {"in": "header", "name": name, "required": False, "schema": {"type": "string"}, "description": description}
        )
        return view

    return decorate


def bearer_auth(view):
    """Document that the view may require ``Authorization: Bearer <token>``."""
    _contract(view)["security"] = [{}, {"bearerAuth": []}]
    return view


# The API, and the metrics that operators scrape beside it.
DOCUMENTED_PREFIXES = ("/api", "/metrics")


def build_spec(app, path_prefixes=DOCUMENTED_PREFIXES):
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
    marshmallow_plugin.converter.add_attribute_function(_null_branch_admits_only_null)
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
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        operations = {method.lower(): _operation(view, rule.endpoint) for method in methods}
        spec.path(path=rule.rule, operations=operations)
    return spec.to_dict()


def _tag(endpoint):
    """An operation's tag: the blueprint that serves it."""
    return endpoint.split(".")[0]


def _tag_description(app, tag):
    """The first line of the docstring of the blueprint's module."""
    blueprint = app.blueprints.get(tag)
    module = sys.modules.get(blueprint.import_name) if blueprint is not None else None
    doc = inspect.getdoc(module) if module is not None else None
    return doc.splitlines()[0] if doc else f"The {tag} routes."


def _null_branch_admits_only_null(converter, field, ret):
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


def _operation(view, endpoint):
    contract = getattr(view, "openapi", None)
    if contract is None:
        raise LookupError(f"route {endpoint!r} has no OpenAPI contract; decorate it with @responds")
    description = inspect.cleandoc(view.__doc__ or endpoint)
    operation = {
        "operationId": endpoint.replace(".", "_"),
        "summary": description.splitlines()[0],
        "description": description,
        "tags": [_tag(endpoint)],
    }
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
        operation["parameters"] = contract["parameters"]
    # An empty list says "public" outright, where no security at all would leave it unsaid.
    operation["security"] = contract["security"] if contract["security"] is not None else []
    operation["responses"] = {str(status): _response(status, *statuses[status]) for status in sorted(statuses)}
    return operation


def _response(status, schema, description, headers, media_type):
    if schema is None and status >= 400:
        schema = ValidationProblemSchema if status == 422 else ProblemSchema
    if media_type is None:
        is_problem = isinstance(schema, type) and issubclass(schema, ProblemSchema)
        media_type = "application/problem+json" if is_problem else "application/json"
    response = {"description": description or _DESCRIPTIONS.get(status) or HTTP_STATUS_CODES[status]}
    if schema is not None:
        response["content"] = {media_type: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response
