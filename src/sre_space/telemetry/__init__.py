"""Senses: the span model, decoding, receivers and the bounded trace store."""
