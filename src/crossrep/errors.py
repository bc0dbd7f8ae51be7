"""Exceptions that carry a message a researcher can act on (file, language, key at fault)."""

from __future__ import annotations

import errno
import traceback


class CrossrepError(Exception):
    """Base class: the message is meant to be shown to the user as is."""


class ConfigError(CrossrepError):
    """A job spec is invalid; the message quotes the YAML key."""


class DataError(CrossrepError):
    """Input data is missing or unusable; the message names the file or language."""


class ModelError(CrossrepError):
    """A model cannot be loaded or cannot handle a language or modality."""


class StoreError(CrossrepError):
    """The activation or similarity store is missing, incomplete or inconsistent."""


def describe(exc: BaseException, out=None) -> str:
    """One line a researcher can act on: crossrep's own message, a full disk with its path, else the type."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"no space left on device writing {exc.filename or out or 'the output folder'}"
    text = str(exc)
    if "os error 28" in text or "No space left" in text:
        return f"no space left on device writing {out or 'the output folder'} ({text.splitlines()[0][:200]})"
    if isinstance(exc, CrossrepError):
        return text
    return "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
