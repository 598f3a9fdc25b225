"""The user's MCP servers as agent tools: their config, the client, approvals, result format."""
