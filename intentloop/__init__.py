"""intentloop: the console entry point and the local stack that compose all layers."""

__version__ = "0.1.0"
