"""Shared test setup: no telemetry, no network, headless plotting, quick hypothesis profiles."""

from __future__ import annotations

import os

import matplotlib
from hypothesis import HealthCheck, settings

# MLflow would try to send usage telemetry; this machine has no network and tests must not wait.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# Tests never write to the project's own tracking store unless they say so.
os.environ.pop("MLFLOW_TRACKING_URI", None)
matplotlib.use("Agg")

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")
