"""`glm-lsp serve`: the pygls language server of the README's LSP commands."""

from __future__ import annotations

import logging
import re

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled

from glm_lsp.config import Settings
from glm_lsp.masking import environment_secrets, mask
from glm_lsp.server.app import GlmServer


class AnsweredErrors(logging.Filter):
    """pygls (and asyncio, for a cancelled handler task) log a traceback for every error a
    handler raises, even those that are the answer the client already got: a cancel or bad
    arguments are dropped, other JSON-RPC errors keep one line, so stderr shows real faults."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Unable to deserialize message"):
            return False  # a traceback as text; GlmProtocol.structure_message says it in a line
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (JsonRpcRequestCancelled, JsonRpcInvalidParams)):
            return False
        if isinstance(exc, JsonRpcException):
            record.msg, record.args, record.exc_info = f"{record.getMessage()}: {exc}", (), None
        return True


class MaskedSecrets(logging.Filter):
    """pygls logs the initialize params (the user's settings) at INFO: a baseUrl's
    `user:password@` and the values of secret-named variables are masked there, as in errors."""

    USERINFO = re.compile(r"(://)[^/\s@'\"]+@")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = mask(self.USERINFO.sub(r"\1***@", text), environment_secrets())
        if masked != text:
            record.msg, record.args = masked, ()
        return True


def build_server(settings: Settings, token: str | None = None) -> GlmServer:
    """A server for one client; `token` (TCP) must arrive in initializationOptions.token."""
    from glm_lsp.server.handlers import register

    server = GlmServer(settings, token=token)
    register(server)
    return server


def serve(
    settings: Settings,
    *,
    tcp: bool = False,
    host: str = "127.0.0.1",
    port: int = 2087,
    token_file: str | None = None,
    allow_remote: bool = False,
) -> int:
    """stdio: one server for the parent's pipe. TCP: a token and one server per connection."""
    for name in ("pygls.protocol.json_rpc", "pygls.server", "pygls.io_", "asyncio"):
        logging.getLogger(name).addFilter(AnsweredErrors())
    logging.getLogger("pygls.protocol.language_server").addFilter(MaskedSecrets())
    if tcp:
        from glm_lsp.server.tcp import check_host, read_token, serve_tcp

        check_host(host, allow_remote)
        serve_tcp(settings, host, port, read_token(token_file), build_server)
        return 0
    server = build_server(settings)
    try:
        server.start_io()
    finally:
        server.stop()
    return 0


__all__ = ["GlmServer", "build_server", "serve"]
