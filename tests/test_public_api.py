"""Every public name resolves from ``trinity_lightning`` and every callback from ``trinity_lightning.callbacks``."""

from __future__ import annotations

import inspect

import pytest
from lightning.pytorch.callbacks import Callback

import trinity_lightning
import trinity_lightning.callbacks as callbacks


@pytest.mark.parametrize("name", trinity_lightning.__all__)
def test_public_name_resolves_and_is_documented(name):
    value = getattr(trinity_lightning, name)
    assert value.__module__.startswith("trinity_lightning."), name
    if inspect.isclass(value) or inspect.isfunction(value):
        assert inspect.getdoc(value), f"{name} has no docstring"


def test_every_callback_is_reexported_and_is_a_lightning_callback():
    names = set(callbacks.__all__)
    exported = {n for n in trinity_lightning.__all__ if inspect.isclass(getattr(trinity_lightning, n))}
    lightning_callbacks = {n for n in exported if issubclass(getattr(trinity_lightning, n), Callback)}
    assert lightning_callbacks == names
    for name in names:
        assert getattr(callbacks, name) is getattr(trinity_lightning, name)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = trinity_lightning.Nope
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = callbacks.Nope
