"""Worked examples of extending futurelat (not part of the installed package)."""
