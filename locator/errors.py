"""One root for every error a user can cause: `GeolocError`, with a subclass per kind of input.

The CLIs and the service turn these, and only these, into one-line messages; anything else is a bug and keeps
its traceback. Each message names the input at fault (a file, a row, an option, a store location).
"""

from __future__ import annotations


class GeolocError(Exception):
    """Something the user can fix: a bad file, option, store, bundle or photo."""


class DataError(GeolocError):
    """A dataset, coordinate, partition, feature cache or predictions file that cannot be used."""


class StoreError(GeolocError):
    """A store that cannot be opened for this bundle, or a batch that cannot be written."""


class BundleError(GeolocError):
    """A bundle directory that is missing a file, whose files do not match its config, or bad backbone weights."""


class ImageError(GeolocError):
    """A photo that cannot be decoded; the message names it."""


class SettingsError(GeolocError):
    """An option with an unknown name or an out-of-range value."""


class OutputError(GeolocError):
    """An output file that cannot be written where the user asked."""
