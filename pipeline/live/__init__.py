"""Scoring camera streams as they arrive: causal windowed scoring (:mod:`pipeline.live.scoring`), the hysteresis
rule that turns snippet scores into events (:mod:`pipeline.live.hysteresis`), and the events' outputs: JSON lines
(:mod:`~pipeline.live.events`), a webhook (:mod:`~pipeline.live.webhook`), mp4 clips with pre- and post-roll
(:mod:`~pipeline.live.clips`) and rolling score CSVs (:mod:`~pipeline.live.score_log`); sources read with PyAV
(:mod:`~pipeline.live.sources`). Issue 14's ``dakd watch`` (the engine over these, a loopback camera, calibration)
is not here yet."""
