"""Exceptions that carry a message a researcher can act on (file, language, key at fault)."""


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
