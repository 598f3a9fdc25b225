"""`glm-lsp serve`: the pygls language server of design section 4."""

from __future__ import annotations

from glm_lsp.config import Settings
from glm_lsp.server.app import GlmServer


def build_server(settings: Settings) -> GlmServer:
    from glm_lsp.server.handlers import register

    server = GlmServer(settings)
    register(server)
    return server


def serve(
    settings: Settings, *, tcp: bool = False, host: str = "127.0.0.1", port: int = 2087
) -> int:
    server = build_server(settings)
    try:
        if tcp:
            server.start_tcp(host, port)
        else:
            server.start_io()
    finally:
        server.stop()
    return 0


__all__ = ["GlmServer", "build_server", "serve"]
