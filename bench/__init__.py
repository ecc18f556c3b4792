"""Conveyor's benchmark (`make bench`, `python -m bench`): Conveyor against Celery 5 on one machine.

`bench/tracing_overhead.py` is a separate script that measures what tracing costs.
"""
