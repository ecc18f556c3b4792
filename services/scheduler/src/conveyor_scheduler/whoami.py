"""AdminService.WhoAmI: who a call's credential stands for, so a client (the dashboard) offers
only what the caller may do. The auth interceptor has already accepted the credential; this
finds its principal the same way (a token first, else a listed client certificate)."""

from __future__ import annotations

import grpc

from conveyor.v1 import admin_service_pb2
from conveyor_scheduler.auth import _authorization
from conveyor_scheduler.auth_file import Principal
from conveyor_scheduler.auth_source import AuthSource


def caller(source: AuthSource, context: grpc.aio.ServicerContext) -> Principal | None:
    table = source.current()
    header = _authorization(context.invocation_metadata())
    if header is not None:
        scheme, _, secret = header.partition(" ")
        return table.tokens.get(source.digest(secret.strip())) if scheme.lower() == "bearer" else None
    auth = context.auth_context()
    subject = b"".join(auth.get("x509_subject", ())).decode(errors="replace")
    common_name = b"".join(auth.get("x509_common_name", ())).decode(errors="replace")
    return table.by_certificate(subject, common_name) if subject else None


def who_am_i(source: AuthSource | None, context: grpc.aio.ServicerContext) -> admin_service_pb2.WhoAmIResponse:
    """auth_enabled=false (and nothing else) without an auth file: every call is allowed."""
    if source is None:
        return admin_service_pb2.WhoAmIResponse(auth_enabled=False)
    principal = caller(source, context)
    if principal is None:  # not reached through the interceptor; say nothing rather than guess
        return admin_service_pb2.WhoAmIResponse(auth_enabled=True)
    return admin_service_pb2.WhoAmIResponse(name=principal.name, roles=sorted(principal.roles),
                                            queues=list(principal.queues or ()), auth_enabled=True)
