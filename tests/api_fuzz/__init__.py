"""Helpers for the catch-all API tests (tests/test_no_500.py): the error-shape check and
the few rows the generated requests need so that they reach past "not found"."""
