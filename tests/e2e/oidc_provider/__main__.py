"""Migrate the provider's database, register the portal as a client, and serve on loopback.

Environment: IDP_PORT, IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_REDIRECT_URI, and
what settings.py reads.
"""
import os

import django
from django.core.management import call_command

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e.oidc_provider.settings")
django.setup()

from oauth2_provider.models import Application  # noqa: E402 (needs the app registry)

call_command("migrate", verbosity=0)
Application.objects.update_or_create(
    client_id=os.environ["IDP_CLIENT_ID"],
    defaults={
        "name": "DMS Access Portal",
        "client_secret": os.environ["IDP_CLIENT_SECRET"],
        "client_type": Application.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
        "redirect_uris": os.environ["IDP_REDIRECT_URI"],
        "algorithm": Application.RS256_ALGORITHM,
        "skip_authorization": True,
    },
)
call_command("runserver", f"127.0.0.1:{os.environ['IDP_PORT']}", use_reloader=False, skip_checks=True)
