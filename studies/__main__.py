"""``python -m studies`` — the same as the ``odeflow`` console script."""

import sys

from studies.cli import main

sys.exit(main())
