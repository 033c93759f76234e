"""The ``dms-access`` command (the console script ``dms_access_cli.main:app``).

Each subcommand is one or two calls of the portal's REST API; importing the
modules below registers them, in the order ``--help`` lists them.
"""
# isort: off
from dms_access_cli import login  # noqa: F401
from dms_access_cli import filing  # noqa: F401
from dms_access_cli import reading  # noqa: F401
from dms_access_cli import deciding  # noqa: F401
from dms_access_cli import sets  # noqa: F401
from dms_access_cli.app import app

# isort: on

__all__ = ["app"]
