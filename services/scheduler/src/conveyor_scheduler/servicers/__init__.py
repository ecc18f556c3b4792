"""Thin gRPC servicers over the scheduler core, one module per service."""
