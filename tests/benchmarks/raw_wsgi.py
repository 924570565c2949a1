"""HTTP baseline: a bare WSGI callable that parses the JSON body and sends it back."""

import json


def app(environ, start_response):
    """Echo a POSTed JSON body; anything else is 405."""
    if environ["REQUEST_METHOD"] != "POST":
        start_response("405 Method Not Allowed", [("Content-Length", "0")])
        return [b""]
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.dumps(json.loads(environ["wsgi.input"].read(size))).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
