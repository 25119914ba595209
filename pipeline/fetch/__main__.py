"""``python -m pipeline.fetch``: ``dakd fetch`` (:mod:`pipeline.cli.fetch`)."""

import sys

from pipeline.cli.fetch import main

sys.exit(main())
