"""Logging handlers that stand in for a slow or stalled event stream in tests."""

import logging
import threading


class GatedHandler(logging.Handler):
    """Holds every event until the gate opens, like a stream nobody reads."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def emit(self, record):
        self.entered.set()
        self.gate.wait(10)
