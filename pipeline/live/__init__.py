"""Scoring camera streams as they arrive (``dakd watch``, :mod:`pipeline.watch`).

Sources read with PyAV (:mod:`~pipeline.live.sources`; files still being written: :mod:`~pipeline.live.growing`;
a loopback camera for tests and benchmarks: :mod:`~pipeline.live.replay`), the model behind one interface for a
run or an export (:mod:`~pipeline.live.model`), causal windowed scoring (:mod:`~pipeline.live.scoring`), the
hysteresis rule that turns snippet scores into events (:mod:`~pipeline.live.hysteresis`), the events' outputs:
JSON lines (:mod:`~pipeline.live.events`), a webhook (:mod:`~pipeline.live.webhook`), mp4 clips with pre- and
post-roll (:mod:`~pipeline.live.clips`), rolling score CSVs (:mod:`~pipeline.live.score_log`), camera lists
(:mod:`~pipeline.live.cameras`), and the engine over them all (:mod:`~pipeline.live.engine`).
"""
