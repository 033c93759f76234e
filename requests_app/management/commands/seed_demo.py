"""``manage.py seed_demo``: the runbook's demo in a running portal whose AWS is a moto server.

For a portal started some other way than ``quickstart`` (say docker-compose
with a moto container): builds the runbook's world in the moto server at
``--aws-endpoint-url`` (default: AWS_ENDPOINT_URL) and adds the demo users and
accounts. Never runs against real AWS. Prints the logins; running it again
gives the demo users new passwords, and nothing else is duplicated.
"""
from __future__ import annotations

import json
import os

from django.core.management.base import BaseCommand, CommandError

from requests_app.demo import DEMO_USERS, demo_request, seed_portal


class Command(BaseCommand):
    help = "Seed the runbook's demo (AWS world in moto, users, accounts) and print the logins."

    def add_arguments(self, parser):
        parser.add_argument(
            "--aws-endpoint-url",
            default=os.environ.get("AWS_ENDPOINT_URL", ""),
            help="The moto server to seed (default: AWS_ENDPOINT_URL). Real AWS is never seeded.",
        )
        parser.add_argument("--json", action="store_true", help="Print the world and logins as JSON.")

    def handle(self, *args, **options):
        endpoint_url = options["aws_endpoint_url"]
        if not endpoint_url:
            raise CommandError("seed_demo seeds a moto server only: give --aws-endpoint-url or set AWS_ENDPOINT_URL")
        from provisioning.demo_world import seed_aws_world

        world = seed_aws_world(endpoint_url)
        seeded = seed_portal(world)
        if options["json"]:
            self.stdout.write(json.dumps({"world": world.as_dict(), "logins": seeded.passwords}, indent=2))
            return
        request = demo_request(world)
        self.stdout.write("Demo seeded. Logins:")
        for username in DEMO_USERS:
            self.stdout.write(f"  {username:<10} {seeded.passwords[username]}")
        self.stdout.write(f"The runbook's secret: {request['secret_arn']}")
        self.stdout.write(f"Its KMS key:          {request['kms_key_arn']}")
        self.stdout.write(f"Replication instance: {request['replication_instance_arn']}")
        self.stdout.write(f"AWS-managed-key secret (preflight refuses it): {world.managed_secret_arn}")
