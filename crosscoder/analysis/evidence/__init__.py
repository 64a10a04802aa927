"""Evidence about candidate latents read from the data and the language models.

`lens` (logit lens of directions), `contexts` (top-activating contexts), `next_token` (what the fine-tune starts to
say where a latent fires), `said` (the persona vectors' reading of those words), `trait_prompts` (latent activations
on a trait's pos / neg prompts and the persona vectors at the lens hook).
"""
