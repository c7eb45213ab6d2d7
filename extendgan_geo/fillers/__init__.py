"""Fillers: what predicts HR pixels inside a window, behind one interface (`Filler`)."""

from extendgan_geo.fillers.base import Filler, TileBatch

__all__ = ["Filler", "TileBatch"]
