import argparse
from dataclasses import dataclass

import pytest

from locator.errors import SettingsError
from locator.registry import Registry
from locator.settings import REQUIRED, add_arguments, from_args, from_mapping, option, to_json

COLOURS = Registry("colour", lazy={"red": "builtins:str", "blue": "builtins:str"})


@dataclass(frozen=True)
class Example:
    size: int = option(REQUIRED, "how big")
    colour: str = option("red", "which colour", choices=COLOURS)
    share: float | None = option(None, "a fraction", minimum=0, maximum=1)
    fast: bool = option(True, "go fast")
    hidden: int = option(3, "not on the command line", cli=False)


def _parser():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    return parser


def test_fields_become_documented_arguments():
    text = _parser().format_help()
    assert "--size SIZE" in text and "how big" in text and "{red,blue}" in text
    assert "which colour (default: red)" in text and "--no-fast" in text and "--hidden" not in text


def test_command_line_values_and_defaults():
    assert from_args(Example, _parser().parse_args(["--size", "4", "--no-fast"])) == Example(4, "red", None, False)
    assert from_args(Example, _parser().parse_args(["--size", "4", "--share", "0.5"])).share == 0.5
    with pytest.raises(SystemExit):
        _parser().parse_args(["--colour", "green", "--size", "1"])


def test_mappings_are_checked_like_request_bodies():
    assert from_mapping(Example, {"size": "7", "fast": "false", "share": ""}) == Example(7, fast=False)
    with pytest.raises(SettingsError, match="body: unknown setting\\(s\\) sizes"):
        from_mapping(Example, {"sizes": 1}, "body")
    with pytest.raises(SettingsError, match="size must be int, got 'big'"):
        from_mapping(Example, {"size": "big"})
    with pytest.raises(SettingsError, match="size must be int, got 2.5"):
        from_mapping(Example, {"size": 2.5})
    with pytest.raises(SettingsError, match="share must be at most 1, got 2.0"):
        from_mapping(Example, {"size": 1, "share": 2})
    with pytest.raises(SettingsError, match="unknown colour 'green'; choose one of red, blue"):
        from_mapping(Example, {"size": 1, "colour": "green"})
    assert to_json(Example(2)) == {"size": 2, "colour": "red", "share": None, "fast": True, "hidden": 3}


def test_registry_names_without_importing_and_creates_on_demand():
    registry = Registry("thing", lazy={"decoder": "json:JSONDecoder"})

    @registry.register("pair")
    def pair(a, b):
        return (a, b)

    assert registry.names() == ("decoder", "pair") and "pair" in registry
    assert registry.create("pair", 1, 2) == (1, 2)
    assert registry.get("decoder").__name__ == "JSONDecoder"
    with pytest.raises(SettingsError, match="unknown thing 'x'; choose one of decoder, pair"):
        registry.get("x")
    with pytest.raises(SettingsError, match="already registered"):
        registry.register("pair")(lambda: None)
