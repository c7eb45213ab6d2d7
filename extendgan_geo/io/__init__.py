"""Raster and vector I/O (rasterio, geopandas). Nothing here imports torch."""
