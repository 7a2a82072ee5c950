"""Popcorn: an open operations platform for streaming infrastructure."""

__version__ = "0.1.0"
