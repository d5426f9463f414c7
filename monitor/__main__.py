"""``python -m monitor``: the same as the ``paper-monitor`` command."""

import sys

from monitor.cli import main

sys.exit(main())
