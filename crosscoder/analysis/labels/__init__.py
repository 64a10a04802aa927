"""Persona labels: match candidate latents against the trait library.

`words` (trait words and the lexical signals), `signals` (per-trait evidence and the label decision), `candidates`
(the candidate records with their evidence and labels).
"""
