"""``python -m nightshift`` runs the ``nightshift`` command."""

import sys

from nightshift.cli import main

sys.exit(main())
