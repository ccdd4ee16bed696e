"""Generators of the repository's derived files; each has a ``--check`` that the tests run for drift."""
