"""Server-side sessions: the model, the Redis store, cookies, encryption and token refresh.

Nothing in this package imports Starlette.
"""
