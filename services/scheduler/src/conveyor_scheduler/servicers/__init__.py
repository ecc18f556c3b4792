"""Thin gRPC servicers, one module per service: each checks its requests and calls the domain
objects server.py hands it (submission, completion, dispatch, ...), never the Core."""
