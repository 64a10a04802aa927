"""The analysis stage: from a trained crosscoder to ranked, labelled and checked persona candidates.

Run it with ``python analyze.py`` or `crosscoder.analysis.run.run_analysis`. Layout (docs/ARCHITECTURE.md): `config`
(AnalyzeConfig, grouped) and `run` (the orchestration) at the top; `records` (the file formats as typed records),
`stats` (the pass over the cache), `rank` (attribution, score, latent table), `evidence`, `labels`, `causal`,
`report` and `export` below it; `cli` for ``python -m crosscoder.analysis <command>``.
"""
