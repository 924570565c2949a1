"""Blueprints for the textbook's user-facing API."""
