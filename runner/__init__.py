"""nirunner: each network instance of an edge device as its own containerd task."""

__version__ = "0.1.0"
