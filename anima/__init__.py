"""Anima: responsible character animation with consent, provenance and detection."""

__version__ = "0.1.0"
