"""Benchmarks of Stammkunde's webhook ingest and delivery worker (see bench/README.md).

Run them as modules from the project root:

    .venv/bin/python -m bench.ingest [--db sqlite|postgresql|both] [--duration 10]
    .venv/bin/python -m bench.worker [--db sqlite|postgresql|both] [--orders 2000]

Nothing here is imported by the app, the jobs or the tests.
"""
