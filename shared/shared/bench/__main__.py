"""`python -m shared.bench`: see `shared.bench.cli`."""

from __future__ import annotations

import sys

from shared.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
