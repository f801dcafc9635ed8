"""``python -m trinity_lightning`` runs the ``trinity`` command."""

import sys

from trinity_lightning.cli import main

sys.exit(main())
