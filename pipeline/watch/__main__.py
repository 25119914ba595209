"""``python -m pipeline.watch``: ``dakd watch`` (:mod:`pipeline.cli.watch`)."""

import sys

from pipeline.cli.watch import main

sys.exit(main())
