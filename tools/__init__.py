"""Development tools of the polybus repository, not part of the distribution: the
Kafka harness that tests and benchmarks start real brokers with. Importable from the
repository root (pytest's ``pythonpath``, ``python -m`` from the root)."""
