"""Trunks: a sequence of embedded latent tokens ``(B, L, d)`` → features ``(B, L, d)``.

A sequence trunk (:mod:`.transformer`, :mod:`.mamba`) has ``width`` (``d``), ``grid`` (the token
grid of a frame, ``M`` tokens) and ``causal``: ``"none"`` (bidirectional), ``"frame"`` (a frame's
tokens see their frame and every earlier one) or ``"token"`` (raster-order causal). Besides
``forward(x)`` (training, checkpointable blocks in ``trunk.blocks``), a causal trunk has
``prefill(x) -> (features, state)`` and ``step(x, state) -> (features, state)`` for rollouts: a
KV cache (transformer) or a recurrent state (Mamba). The DiT trunk (:mod:`.dit`) is a conditional
network ``net(x_t, t, context, uncond)`` for flow matching. Objectives
(:mod:`futurelat.models.heads.objectives`) say which trunks fit them.
"""
