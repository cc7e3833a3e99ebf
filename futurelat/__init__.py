"""futurelat: video future prediction in latent space.

A backbone turns frames into latents, a head predicts future latents, one trainer
trains either, and one evaluator scores the predicted frames against baselines.
"""

__version__ = "0.1.0"
