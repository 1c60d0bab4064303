"""Benchmarks for bff against a direct upstream, Apache mod_proxy and Apache + mod_auth_openidc.

Run everything with one command from the repository root::

    .venv/bin/python -m benchmarks.run [--with-peers] [--quick]

See ``benchmarks/README.md``. Nothing here is part of the pytest suite.
"""
