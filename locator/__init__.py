"""Runtime core of the geolocation system: geodesy, cells, datasets, metrics, CLI.

Coordinates are always (lat, lon) in degrees, in that order.
"""

__version__ = "0.1.0"
