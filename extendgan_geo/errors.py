"""Exceptions and warnings raised by extendgan_geo.

Every error subclasses `EganError` and, where it fits, a builtin (so `except ValueError` still works). A message
says what was found, what was expected and how to fix it, on one line.
"""


class EganError(Exception):
    """Base class of all errors raised by extendgan_geo."""


class ConfigError(EganError, ValueError):
    """An option or setting has a value outside its allowed range."""


class InputError(EganError, ValueError):
    """An input file is missing, unreadable or not what the tool expects."""


class GridMismatchError(EganError, ValueError):
    """Two inputs do not overlap or cannot be brought onto one grid."""


class BandMismatchError(EganError, ValueError):
    """Band indexes or band counts do not match each other or the filler."""


class OutputExistsError(EganError, FileExistsError):
    """The output path exists and overwriting was not allowed."""


class CheckpointError(EganError):
    """A model checkpoint cannot be read or does not fit the data."""


class UnfilledPixelsWarning(UserWarning):
    """Some gap pixels had no valid reference and were left as nodata."""
