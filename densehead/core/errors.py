"""Errors meant for the user: each message says what is wrong with the input and, where it
can, how to fix it. (Model files have their own, in densehead.weights.assets.)"""
from __future__ import annotations


class ImageError(ValueError):
    """An input that is not a usable image."""


class VideoError(ValueError):
    """A video that cannot be read or written."""


class OptionsError(ValueError):
    """An option value that makes no sense; `name` is the option's field name."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name} {message}")
