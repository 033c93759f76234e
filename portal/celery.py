"""The Celery application shared by the web process, the workers and beat."""
import os

from celery import Celery
from celery.signals import setup_logging, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The tasks live in requests_app.workflow.tasks (not an app's top-level tasks module).
app.autodiscover_tasks(["requests_app.workflow"])


@setup_logging.connect
def use_portal_logging(**kwargs):
    """Workers and beat log like the web process (settings.LOGGING: JSON lines
    with request id and step) instead of Celery's own format."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@worker_init.connect
def serve_worker_metrics(**kwargs):
    """Expose step metrics from the worker's main process when asked to."""
    from django.conf import settings

    if settings.WORKER_METRICS_PORT:
        from requests_app.metrics import serve_worker_metrics as serve

        serve(settings.WORKER_METRICS_PORT)
