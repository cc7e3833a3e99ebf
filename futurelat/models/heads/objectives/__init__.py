"""Objectives: the loss and the rollout of a head, on any trunk that fits (each module says which).

An objective owns its input and output layers (embeddings, projections, standardizers) and is
called with the trunk as first argument: ``loss(trunk, z) -> dict`` (key ``"loss"``) and
``rollout(trunk, context, num_future, *, sampling, generator) -> Latents``. :mod:`.code_prior`
predicts codes; :mod:`.latent_regression` and :mod:`.flow_matching` predict continuous latents.
"""
