"""The training tests' small ingested dataset, for the end-to-end Prometheus test."""

from tests.train.conftest import dataset  # noqa: F401  (a fixture, used by name)
