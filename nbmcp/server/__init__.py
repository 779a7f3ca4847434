"""The MCP face: the tools, what the model sees of outputs, and the stdio and streamable-HTTP transports."""
