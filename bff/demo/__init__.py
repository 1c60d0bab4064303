"""``bff demo``: the gateway with everything it needs on one machine, offline.

One process runs: the embedded Redis (a child ``redis-server``), a development
OpenID Provider (``oidc-provider-mock`` in a werkzeug thread), the sample API
(:mod:`bff.demo_api`) and the gateway serving the sample SPA at ``/``. Ctrl-C
stops them all.

The building blocks are public for the tests: :class:`DemoProvider`,
:func:`spa_routes` and :func:`demo_settings`.
"""

from bff.demo.provider import ACCESS_TOKEN_TTL, CLIENT_ID, DemoProvider
from bff.demo.run import demo_settings, run_demo
from bff.demo.spa import SPA_CSP, spa_routes

__all__ = ["ACCESS_TOKEN_TTL", "CLIENT_ID", "SPA_CSP", "DemoProvider", "demo_settings", "run_demo",
           "spa_routes"]
