"""Hand-offs to other tools: SAELens SAE folders (`saelens`) and Weights & Biases (`wandb_log`)."""
