"""StyleGAN2 and SWAGAN generators and discriminators, published-checkpoint import, inversion hooks.

The public API (see docs/generators.md)::

    G = load_generator("stylegan2-ffhq-config-f.pt", device="cpu")   # or our own checkpoint
    w = G.mapping(z, truncation=0.7)                                  # (N, style_dim)
    img = G.synthesize(w, noise_mode="const")                         # (N, 3, H, W) in [-1, 1]
    img, feats = G.synthesize(w, return_features=["up64"], fusion={"up64": (scale, shift)})
"""

from egain.generators.config import channel_table, rosinality_channels
from egain.generators.convert import (
    discriminator_from_rosinality,
    discriminator_to_rosinality,
    generator_from_rosinality,
    generator_to_rosinality,
)
from egain.generators.discriminator import Discriminator
from egain.generators.io import (
    build_discriminator,
    build_generator,
    discriminator_from_checkpoint,
    generator_from_checkpoint,
    load_discriminator,
    load_generator,
    save_discriminator,
    save_generator,
)
from egain.generators.stylegan import Generator, LayerInfo

__all__ = [
    "Discriminator",
    "Generator",
    "LayerInfo",
    "build_discriminator",
    "build_generator",
    "channel_table",
    "discriminator_from_checkpoint",
    "discriminator_from_rosinality",
    "discriminator_to_rosinality",
    "generator_from_checkpoint",
    "generator_from_rosinality",
    "generator_to_rosinality",
    "load_discriminator",
    "load_generator",
    "rosinality_channels",
    "save_discriminator",
    "save_generator",
]
