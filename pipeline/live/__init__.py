"""Scoring camera streams as they arrive: causal windowed scoring (:mod:`pipeline.live.scoring`) and the hysteresis
rule that turns snippet scores into events (:mod:`pipeline.live.hysteresis`). Issue 14's ``dakd watch`` (sources
that reconnect, event outputs, calibration) builds on these and is not here yet."""
