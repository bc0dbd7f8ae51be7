"""Bundled job specs (YAML), installed as `crossrep.jobs` so `crossrep run demo` works from anywhere."""
