"""JoyQuality Studio: turn your own "A is better than B" clicks into a personal image-quality model."""

__version__ = "0.1.0"
