"""``python -m xafm``: the same command line as the ``xafm`` script."""

import sys

from xafm.cli import main

sys.exit(main())
