"""Conveyor scheduler: queues, routes and leases tasks over gRPC, with all state in Redis."""

__version__ = "0.1.0"
