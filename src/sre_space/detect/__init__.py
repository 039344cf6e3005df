"""Detectors: the live signals Scout reads."""
