"""The command line: the only room of the project that parses arguments, prints for a person and chooses exit codes.

- :mod:`~pipeline.cli.main`: ``dakd``, one subcommand per row of :data:`pipeline.cli.commands.COMMANDS`.
- :mod:`~pipeline.cli.commands`: that table, and the parsers built from it (torch-free: ``--help`` answers at once).
- :mod:`~pipeline.cli.parser`: the parser class (no abbreviations, "did you mean") and the options shared by commands.
- :mod:`~pipeline.cli.output`: the result lines, ``--json``, ``error:`` and ``FAILED`` lines, logging.
- one module per command (``extract``, ``train``, ``evaluate``, ...): its flags (``add_arguments``), and ``run``,
  which turns them into one call of :mod:`pipeline.api` (or of the command's own package) and prints the result.

Nothing outside this package imports it but the ``python -m`` shims (``pipeline/<command>/__main__.py``).
"""
