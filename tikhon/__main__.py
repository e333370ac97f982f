"""``python -m tikhon``: the tikhon command line (see :mod:`tikhon.cli`)."""

import sys

from tikhon.cli import main

if __name__ == "__main__":
    sys.exit(main())
