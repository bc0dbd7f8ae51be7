"""Data: FLEURS-layout readers, sentence selection, audio decoding and the built-in demo data."""
