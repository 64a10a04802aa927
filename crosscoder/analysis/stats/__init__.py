"""One pass over the activation cache and what follows from it without a language model.

`collect` (the pass: per-latent sums, slices, FVE, top examples; `kernels` holds its sparse fast path and the dense
reference), `geometry` (decoder norms, cosines, latent classes), `scaling` (Latent Scaling betas and artifact
flags), `baseline` (the mean activation-difference baseline), `control` (the control fine-tune's cache).
"""
