"""``python -m dms_access_cli``: the same command as the ``dms-access`` script."""
from dms_access_cli.main import app

app(prog_name="dms-access")
