"""``dakd watch``: camera streams scored as they arrive (the command line is :mod:`pipeline.cli.watch`).

Sources read with PyAV (:mod:`~pipeline.watch.sources`; files still being written: :mod:`~pipeline.watch.growing`;
a loopback camera for tests and benchmarks: :mod:`~pipeline.testing.replay`), the model behind one interface for a
run or an export (:mod:`~pipeline.watch.model`), causal windowed scoring (:mod:`~pipeline.watch.scoring`), the
alert rule that turns snippet scores into events (:mod:`~pipeline.alert_rule`, also detect's and calibrate's),
the events' outputs: JSON lines (:mod:`~pipeline.watch.events`), a webhook (:mod:`~pipeline.watch.webhook`), mp4
clips with pre- and post-roll (:mod:`~pipeline.watch.clips`), rolling score CSVs (:mod:`~pipeline.watch.score_log`),
camera lists (:mod:`~pipeline.watch.cameras`), and the watcher over them all (:mod:`~pipeline.watch.watcher`).
"""
