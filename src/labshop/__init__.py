"""A small shop (frontend, checkout, payments, inventory) on ordinary parts.

The application code the sre-space lab runs and breaks. It is a package of its
own so that what it emits (span names, exception types, stack frames) looks
like any user's service, with nothing of the tool that observes it.
"""
