"""bff: an OpenID Connect backend-for-frontend gateway.

The browser holds only an opaque, signed session cookie; access, refresh and ID
tokens live server-side in Redis, encrypted at rest.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
