"""One error root: every exception class our packages define derives from GeolocError."""

import importlib
import inspect
import pkgutil

import pytest

import ingest
import locator
import training
from locator.errors import BundleError, DataError, GeolocError, ImageError, SettingsError, StoreError


def _our_exception_classes():
    found = {}
    for package in (locator, training, ingest):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            imported = importlib.import_module(module.name)
            for name, obj in inspect.getmembers(imported, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__.split(".")[0] in ("locator", "training", "ingest"):
                    found[f"{obj.__module__}.{name}"] = obj
    return found


def test_every_error_class_derives_from_geoloc_error():
    classes = _our_exception_classes()
    assert len(classes) >= 10, sorted(classes)
    assert not [name for name, cls in classes.items() if not issubclass(cls, GeolocError)]


@pytest.mark.parametrize("module, name, kind", [
    ("locator.datasets", "DatasetError", DataError), ("locator.geo", "CoordinateError", DataError),
    ("locator.cells", "PartitionError", DataError), ("locator.feature_cache", "FeatureCacheError", DataError),
    ("locator.images", "ImageLoadError", ImageError), ("locator.backbone", "BackboneError", BundleError),
    ("locator.bundle", "BundleError", BundleError), ("locator.store", "StoreError", StoreError),
])
def test_errors_fall_into_their_kind(module, name, kind):
    assert issubclass(getattr(importlib.import_module(module), name), kind)


def test_geoloc_error_is_not_a_value_error():
    # The CLIs catch GeolocError only; a ValueError raised by a bug must keep its traceback.
    assert not issubclass(GeolocError, ValueError) and issubclass(SettingsError, GeolocError)
