"""``python -m xafm.cli``: the ``xafm`` command line."""

import sys

from xafm.cli import main

sys.exit(main())
