"""Checks of the deployment examples under deploy/ (Docker, Compose, Kubernetes, proxies, Redis)."""
