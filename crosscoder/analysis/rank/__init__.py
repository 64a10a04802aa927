"""From statistics to a ranking: attribution of the ft - base difference, scores, candidates and the latent table.

`attribution` (attribution per slice, control attribution, score, rank), `table` (every per-latent column, in the
order of docs/ANALYSIS_FORMAT.md).
"""
