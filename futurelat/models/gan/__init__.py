"""Adversarial and perceptual training of a backbone with a pixel decoder (``backbone.gan``).

- :mod:`~futurelat.models.gan.discriminator`: the ``patch2d`` and ``style3d`` discriminators;
- :mod:`~futurelat.models.gan.losses`: hinge / non-saturating losses, LeCam, the adaptive weight;
- :mod:`~futurelat.models.gan.perceptual`: the LPIPS-style loss on a frozen transformers image model;
- :mod:`~futurelat.models.gan.build`: :func:`~futurelat.models.gan.build.build_gan`, what the trainer gets.

The trainer's side (two optimizers, checkpoints, DDP, AMP) is :mod:`futurelat.training.gan_step`.
"""
