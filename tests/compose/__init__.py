"""The compose stack under a real Docker engine: stand-in images and the test that runs it."""
