"""The HTTP face of the gateway: Starlette endpoints and plain ASGI middleware."""
