"""The error tree in knocknft.errors' docstring names every error knocknft defines, and where."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import knocknft
from knocknft import errors
from knocknft.errors import KnocknftError


def every_error_class() -> set[type[KnocknftError]]:
    found: set[type[KnocknftError]] = set()
    for module in pkgutil.walk_packages(knocknft.__path__, "knocknft."):
        if module.name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing it would run the program
        for _, value in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(value, KnocknftError) and value.__module__.startswith("knocknft."):
                found.add(value)
    return found


def test_the_error_tree_lists_every_error_class_with_its_module() -> None:
    doc = errors.__doc__ or ""
    classes = every_error_class()
    assert {KnocknftError, errors.ConfigError, errors.NftError} <= classes
    missing = []
    for cls in sorted(classes, key=lambda c: c.__name__):
        # The tree's entry for cls: its line and any continuation lines up to the next entry.
        entry = re.search(rf"── {cls.__name__} .*(?:\n[ │]+ {{10,}}\S.*)*", doc)
        if cls is KnocknftError:
            entry = re.search(r"^ *KnocknftError$", doc, re.MULTILINE)
        if entry is None:
            missing.append(f"{cls.__name__}: not in the tree")
        elif cls.__module__ != errors.__name__ and f"({cls.__module__})" not in entry.group(0):
            missing.append(f"{cls.__name__}: the tree does not say it lives in {cls.__module__}")
    assert missing == []
