"""Fixtures shipped for tests, benchmarks and `python -m crosscoder.analysis check-report --sample`: synthetic
activation sets (`synthetic`) and a synthetic analysis folder (`report_sample`). Not used by the pipeline itself."""
