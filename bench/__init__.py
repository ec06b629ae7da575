"""polybus benchmarks (not tests): ``python -m bench.memory``; helpers in ``bench._common``."""
