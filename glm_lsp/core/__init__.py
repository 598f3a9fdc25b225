"""The front-end-independent core: what the LSP server and the ACP agent both drive."""
