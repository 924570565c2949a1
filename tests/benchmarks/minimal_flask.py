"""HTTP baseline: a minimal Flask app whose one POST route parses JSON and sends it back."""

from flask import Flask, jsonify, request

app = Flask(__name__)


# The same path as the telemetry route, so every variant gets the same request bytes.
@app.post("/api/telemetry/log")
def echo_json():
    """Send the parsed JSON body back."""
    return jsonify(request.get_json())
