"""The installed version (one place, importable without importing anything else)."""

__version__ = "0.1.0"
