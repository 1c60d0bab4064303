"""Fault tests: real Redis, Sentinel, Cluster, provider, upstream and gateway processes are
broken under traffic; each test records what users saw and how long recovery took (printed at
the end of the run and written to test-artifacts/faults-report.json)."""
