"""Hostile-traffic tests: property-based fuzzing (hypothesis) of the real app in-process, plus
size and rate limits and security headers; the number of inputs tried per target is printed at
the end of the run and written to test-artifacts/fuzz-volume.json."""
