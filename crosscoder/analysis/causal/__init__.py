"""Interventions on the language models: steering and ablation of candidates, and the splice metrics.

`hooks` (residual-stream edits that are removed on exit), `runner` (steer / ablate one candidate, scored on a trait),
`batched` (many candidates in a few generate calls), `splice` (CE / KL with the reconstruction spliced in).
"""
