"""Command line of the tensor benchmark: ``python benchmarks/tensor_layers.py {prepare,grid,latency,report} ...``.

The code is the package ``benchmarks/tensor_layers/`` (one job per module; usage in ``tensor_layers/cli.py``). This
file keeps the command, and ``import``-ing it by path (as the tests do) gives the package's functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tensor_layers import *  # noqa: F403
from tensor_layers.cli import main

if __name__ == "__main__":
    main()
