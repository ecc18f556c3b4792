"""Conveyor's web dashboard: reads and steers a Conveyor cluster through its gRPC contract only."""

__version__ = "0.1.0"
