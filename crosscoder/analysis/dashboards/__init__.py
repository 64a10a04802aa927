"""Per-latent dashboards for every live latent (or a chosen set), in the style of sae-dashboard / Neuronpedia.

`collect.band_pass` reads the activation cache once more after the statistics pass: per latent, a histogram of its
non-zero activations and random examples from each activation band (quantile-band examples). `build.build_dashboards`
adds the top-activating contexts, the logit lens of each model's decoder and of the decoder difference, and writes
`<analysis>/dashboards/latents.json` (`records.LatentDashboard`) and the self-contained `dashboards.html`
(`page.write_page`: search by latent, label, class or token; activation-density histogram). The W&B analysis run logs
the same as the table `latent_dashboards` and the page (`crosscoder.analysis.export.wandb_log`).
"""
