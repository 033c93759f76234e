"""``python -m bench``: run every benchmark, print the table, write the figures.

The database named by BENCH_DATABASE_URL (default: the local
``portal_bench``) is dropped, created and migrated first; the workers use
CELERY_BROKER_URL. BENCH_SIZE (or --size) is ``full`` or ``tiny``;
``--only pages`` (repeatable) runs only the named benchmarks. BENCH_PROFILE=1
also profiles each page (``bench.pages``). BENCH_AWS_LATENCY_MS is the
modelled AWS latency the provisioning and throughput benchmarks run at after
their run at 0 ms (bench/LATENCY.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=os.environ.get("BENCH_SIZE", "full"), choices=("full", "tiny"))
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (pages, provisioning, ...)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    from bench import database

    database.recreate(database_url)
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # Notifications are built and "sent" as in production, into memory instead of onto the table.
    os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")

    # The static files are never collected for a benchmark run; whitenoise says so once per client.
    warnings.filterwarnings("ignore", message="No directory at")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from bench.report import table
    from bench.sizes import SIZES
    from bench.suite import BENCHMARKS, run_all

    unknown = set(args.only or ()) - {name for name, _ in BENCHMARKS}
    if unknown:
        parser.error(f"no benchmark named {', '.join(sorted(unknown))}")
    results = run_all(SIZES[args.size], only=args.only, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(table(results))
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nFigures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
