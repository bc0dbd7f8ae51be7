"""Comparison families: placeholder registry, filled in below."""
DEFAULT = ("crossmodal", "text", "speech", "text_speech")
FAMILIES = DEFAULT + ("crosslayer", "crossmodel")
