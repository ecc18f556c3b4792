"""Conveyor worker: holds one stream to a scheduler and runs the app's task handlers."""

__version__ = "0.1.0"
