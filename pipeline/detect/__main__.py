"""``python -m pipeline.detect``: ``dakd detect`` (:mod:`pipeline.cli.detect`)."""

import sys

from pipeline.cli.detect import main

sys.exit(main())
