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


def error_line(error: BaseException) -> str:
    """An error as one line for a record or a log: its first line that says something, spaces
    folded (a Ray task's error goes on with the worker's traceback); its type's name if empty."""
    lines = [" ".join(line.split()) for line in str(error).splitlines()]
    return next((line for line in lines if line), type(error).__name__)


def one_line(text: str, limit: int = 300) -> str:
    """All of `text` on one line (whitespace runs, line breaks too, become one space), cut to
    `limit` characters: a message a log line or a status line can hold. (error_line keeps an
    error's first line only.)"""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
