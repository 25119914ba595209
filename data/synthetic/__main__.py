"""``python -m data.synthetic ...``: ``dakd synthetic`` (:mod:`pipeline.cli.synthetic`). A shim: data/ imports
nothing of pipeline/, but a ``__main__`` is no module anyone imports; it hands the command line over."""

import sys

from pipeline.cli.synthetic import main

sys.exit(main())
