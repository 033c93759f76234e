"""Fixtures shared by the whole suite."""
import os

# No test may ever reach real AWS: fake credentials, a fixed region.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.pop("AWS_PROFILE", None)

# The runbook's AWS world in moto (fixtures ``aws`` and ``world``), shared by
# the engine's and the portal's tests; the live system (moto server, Celery
# workers) shared by the integration and the browser tests.
pytest_plugins = ["tests.aws_world", "tests.live_system"]
