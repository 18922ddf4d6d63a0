"""Helpers the tests share, imported as a normal package (`from tests.support import ...`)."""
