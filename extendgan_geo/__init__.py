"""extendgan-geo: fill large holes in high-resolution rasters, guided by a low-resolution reference."""

__version__ = "0.1.0"
