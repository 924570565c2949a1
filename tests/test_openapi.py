"""GET /api/openapi.json: a valid OpenAPI 3 document generated from the route schemas."""

import pytest
from openapi_spec_validator import validate

ROUTES = {
    ("/api/telemetry/log", "post"): {"202", "400", "401", "413", "415", "422", "500", "503"},
    ("/api/telemetry/health", "get"): {"200", "500", "503"},
    ("/api/ai/ask-question", "post"): {"200", "400", "413", "415", "422", "500"},
    ("/api/ai/explain-like-10", "post"): {"200", "400", "413", "415", "422", "500"},
    ("/api/ai/quiz", "post"): {"200", "400", "413", "415", "422", "500"},
    ("/api/ai/diagram", "post"): {"200", "400", "413", "415", "422", "500"},
    ("/api/openapi.json", "get"): {"200", "500"},
}


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_api_route_is_documented_with_its_statuses(app, document):
    documented = {
        (path, method): set(operation["responses"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert documented == ROUTES
    served = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api")}
    assert served == set(document["paths"])


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
