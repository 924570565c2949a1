"""The OpenAPI document and the committed contract: valid, generated, and true to the routes."""

from pathlib import Path

import pytest
import yaml
from app.openapi import DOCUMENTED_PREFIXES
from flask import Blueprint
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate

LOG = "/api/telemetry/log"

BATCH = "/api/telemetry/batch"

# What the project's own routes answer; a route added later is held to its contract by the tests below.
STATUSES = {
    ("/api/telemetry/log", "post"): {"200", "202", "400", "401", "403", "413", "415", "422", "429", "500", "503"},
    ("/api/telemetry/batch", "post"): {"200", "202", "400", "401", "403", "413", "415", "422", "429", "500", "503"},
    ("/api/telemetry/health", "get"): {"200", "500", "503"},
    ("/api/telemetry/client.js", "get"): {"200", "304", "416", "500"},
    ("/api/telemetry/live", "get"): {"200", "500"},
    ("/api/telemetry/ready", "get"): {"200", "500", "503"},
    ("/api/telemetry/event-schema.json", "get"): {"200", "500"},
    ("/api/ai/ask-question", "post"): {"200", "400", "403", "413", "415", "422", "500"},
    ("/api/ai/explain-like-10", "post"): {"200", "400", "403", "413", "415", "422", "500"},
    ("/api/ai/quiz", "post"): {"200", "400", "403", "413", "415", "422", "500"},
    ("/api/ai/diagram", "post"): {"200", "400", "403", "413", "415", "422", "500"},
    ("/api/openapi.json", "get"): {"200", "500"},
    ("/metrics", "get"): {"200", "500"},
}


@pytest.fixture
def document(client):
    return client.get("/api/openapi.json").get_json()


def body_validator(document, path):
    """A validator for the request body ``path`` documents, with OpenAPI 3.0 semantics (nullable)."""
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return OAS30Validator({**schema, "components": document["components"]}, format_checker=oas30_format_checker)


def test_served_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"] == "3.0.3"


def served_operations(app, prefix):
    """(path, method) of every route the app serves under ``prefix``, from its URL map."""
    return {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(prefix)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_api_route_is_documented_with_its_statuses(app, document):
    documented = {
        (path, method): set(operation["responses"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert set(documented) == served_operations(app, DOCUMENTED_PREFIXES)
    assert {route: documented[route] for route in STATUSES} == STATUSES


def test_a_route_without_a_contract_is_documented_from_what_is_known(make_app):
    app = make_app()
    reading = Blueprint("reading", __name__, url_prefix="/api/reading")

    @reading.route("/chapters/<int:number>/sections/<section>", methods=["GET", "POST"])
    def open_chapter(number, section):
        """Open a chapter at a section.

        No @responds: nothing says what it answers.
        """
        return {"chapter": number, "section": section}

    app.register_blueprint(reading)

    response = app.test_client().get("/api/openapi.json")

    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    operations = document["paths"]["/api/reading/chapters/{number}/sections/{section}"]
    assert set(operations) == {"get", "post"}
    operation = operations["get"]
    assert operation["summary"] == "Open a chapter at a section."
    assert operation["x-undocumented"] is True
    assert set(operation["responses"]) == {"default", "500"}
    assert [(parameter["name"], parameter["schema"]["type"]) for parameter in operation["parameters"]] == [
        ("number", "integer"),
        ("section", "string"),
    ]
    assert "reading" in {tag["name"] for tag in document["tags"]}
    assert app.test_cli_runner().invoke(args=["telemetry", "openapi"]).exit_code == 0


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (LOG, {"event_type": "chapter_visit"}, 202),
        (LOG, {"event_type": "chapter_visit", "payload": None}, 202),
        (LOG, {"event_type": "chapter_visit", "payload": {"extra": [1, {"a": None}]}}, 202),
        (LOG, {"event_type": "chapter_visit", "payload": {"timestamp": "2026-01-02T03:04:05Z"}}, 202),
        (LOG, {"event_type": "ai_block_used", "payload": {"block_type": "quiz", "query": None}}, 202),
        (LOG, {"event_type": "error_event", "payload": {"error_type": "TypeError"}}, 202),
        # A known field of the wrong type: the document must reject what the route rejects.
        (LOG, {"event_type": "chapter_visit", "payload": {"timestamp": 5}}, 422),
        (LOG, {"event_type": "chapter_visit", "payload": {"chapter_id": None}}, 422),
        (LOG, {"event_type": "ai_block_used", "payload": {"block_type": "poem"}}, 422),
        (LOG, {"event_type": "ai_block_used", "payload": {"user_id": 7}}, 422),
        (LOG, {"event_type": "error_event", "payload": {"error_message": ["x"]}}, 422),
        (LOG, {"event_type": "error_event", "payload": "text"}, 422),
        (LOG, {"event_type": "page_view"}, 422),
        (LOG, {"payload": {}}, 422),
        (LOG, {"event_type": "chapter_visit", "user_id": "u1"}, 422),
        (LOG, {"event_type": "chapter_visit", "event_id": "0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11"}, 202),
        (LOG, {"event_type": "chapter_visit", "event_id": "not-a-uuid"}, 422),
        (LOG, {"event_type": "chapter_visit", "event_id": 7}, 422),
        (BATCH, {"events": [{"event_type": "chapter_visit"}, {"event_type": "error_event", "payload": {}}]}, 202),
        (BATCH, {"events": [{"event_type": "chapter_visit", "event_id": "0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11"}]}, 202),
        (BATCH, {"events": []}, 422),
        (BATCH, {"events": {"event_type": "chapter_visit"}}, 422),
        (BATCH, {"events": [{"event_type": "chapter_visit"}], "extra": 1}, 422),
        (BATCH, {"event_type": "chapter_visit"}, 422),
        (BATCH, {"events": [{"event_type": "page_view"}]}, 422),
        (BATCH, {"events": [{"event_type": "chapter_visit", "payload": {"chapter_id": 3}}]}, 422),
        ("/api/ai/quiz", {"chapter_id": "c"}, 200),
        ("/api/ai/quiz", {"chapter_id": "c", "num_questions": 10}, 200),
        ("/api/ai/quiz", {"chapter_id": "c", "num_questions": 11}, 422),
        ("/api/ai/quiz", {"chapter_id": "c", "num_questions": 2.0}, 422),
        ("/api/ai/ask-question", {"chapter_id": "c", "section_id": "s", "question": "Why?"}, 200),
        ("/api/ai/ask-question", {"chapter_id": "", "question": "Why?"}, 422),
        ("/api/ai/ask-question", {"chapter_id": "c" * 129, "question": "Why?"}, 422),
        ("/api/ai/explain-like-10", {"chapter_id": "c", "concept": "x" * 2001}, 422),
        ("/api/ai/diagram", {"chapter_id": "c", "description": "a cycle", "style": "dark"}, 422),
    ],
)
def test_documented_body_schema_agrees_with_the_route(client, document, path, body, status):
    response = client.post(path, json=body)

    assert response.status_code == status
    assert body_validator(document, path).is_valid(body) is (status < 300)


@pytest.mark.parametrize("path", [LOG, BATCH])
def test_headers_always_sent_with_a_status_are_documented_as_required(document, path):
    responses = document["paths"][path]["post"]["responses"]

    assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert responses["503"]["headers"]["Retry-After"]["required"] is True


@pytest.mark.parametrize("path", [LOG, BATCH])
def test_ingestion_bodies_are_documented_as_json_and_as_text_plain(document, path):
    content = document["paths"][path]["post"]["requestBody"]["content"]

    assert set(content) == {"application/json", "text/plain"}
    assert content["text/plain"]["schema"] == content["application/json"]["schema"]


def test_document_names_its_server_licence_and_contact(document):
    assert document["servers"] == [{"url": "/", "description": "The host that serves this document."}]
    assert document["info"]["license"] == {"name": "Proprietary"}
    assert document["info"]["contact"]["name"]


def test_every_operation_says_who_may_call_it_and_what_it_does(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            # Public unless it may require the ingest token; never left unsaid.
            expected = [{}, {"bearerAuth": []}] if path in (LOG, BATCH) else []
            assert operation["security"] == expected, (path, method)
            assert operation["description"].startswith(operation["summary"])


def test_every_tag_is_defined_and_described(document):
    used = {
        tag
        for operations in document["paths"].values()
        for operation in operations.values()
        for tag in operation["tags"]
    }
    defined = {tag["name"]: tag["description"] for tag in document["tags"]}

    assert set(defined) == used == {"ai_blocks", "docs", "metrics", "telemetry"}
    assert defined["telemetry"] == "The telemetry blueprint: event ingestion for the front end, and health."


def test_ai_block_bodies_are_json_only(document):
    assert set(document["paths"]["/api/ai/quiz"]["post"]["requestBody"]["content"]) == {"application/json"}


def test_refused_batches_are_documented_with_their_results(document):
    responses = document["paths"][BATCH]["post"]["responses"]
    for status in ("413", "422", "503"):
        assert responses[status]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/BatchProblem")
    assert "results" in document["components"]["schemas"]["BatchProblem"]["properties"]


def test_tracker_is_documented_as_javascript(document):
    content = document["paths"]["/api/telemetry/client.js"]["get"]["responses"]["200"]["content"]

    assert set(content) == {"text/javascript"}


def test_request_bodies_come_from_the_marshmallow_schemas(document):
    schemas = document["components"]["schemas"]
    ask = schemas["AskQuestion"]
    assert ask["required"] == ["chapter_id", "question"]
    assert ask["properties"]["question"]["maxLength"] == 2000
    assert ask["additionalProperties"] is False
    assert schemas["QuizRequest"]["properties"]["num_questions"]["maximum"] == 10
    block_types = schemas["AiBlockUsedPayload"]["properties"]["block_type"]["enum"]
    assert block_types == ["ask-question", "explain-like-10", "quiz", "diagram"]
    body = document["paths"]["/api/telemetry/log"]["post"]["requestBody"]["content"]["application/json"]
    assert len(body["schema"]["oneOf"]) == 3


def test_errors_are_documented_as_problems(document):
    responses = document["paths"]["/api/telemetry/log"]["post"]["responses"]
    assert set(responses["422"]["content"]) == {"application/problem+json"}
    assert responses["422"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("ValidationProblem")
    assert responses["400"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    assert "Retry-After" in responses["503"]["headers"]
    assert "WWW-Authenticate" in responses["401"]["headers"]


REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACT_PATH = "specs/059-analytics-telemetry/contracts/telemetry-api.yaml"
CONTRACT = REPO_ROOT / CONTRACT_PATH
CONTRACT_COMMAND = ["telemetry", "openapi", "--prefix", "/api/telemetry", "--format", "yaml"]


def test_committed_contract_is_what_the_code_generates(runner):
    result = runner.invoke(args=CONTRACT_COMMAND)

    assert result.exit_code == 0, result.output
    assert CONTRACT.read_text(encoding="utf-8") == result.output, (
        f"{CONTRACT_PATH} is stale; regenerate it from the repository root with\n"
        f"  flask --app wsgi {' '.join(CONTRACT_COMMAND)} > {CONTRACT_PATH}"
    )


def test_committed_contract_is_valid_openapi_3_for_the_telemetry_routes(app):
    contract = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))

    validate(contract)
    assert set(contract["paths"]) == {path for path, _ in served_operations(app, "/api/telemetry")}
