"""``python -m nightshift.kubectl``: the same as the ``kubectl-nightshift`` script."""

import sys

from nightshift.kubectl import main

sys.exit(main())
