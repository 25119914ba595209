"""Support for the tests and benchmarks, not used by the pipeline itself.

- :mod:`~pipeline.testing.replay`: a loopback camera that replays a video file as a live stream.
"""
