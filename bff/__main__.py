"""``python -m bff`` is the ``bff`` command."""

from bff.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
