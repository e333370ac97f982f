"""asv benchmark suites (``asv run --python=same --quick``) and the peer comparison.

asv imports this folder as a package; the peer modules import ``_timing`` as a
top-level module, as they do when ``compare_peers.py`` runs them as scripts.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
