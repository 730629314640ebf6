"""egain: high-fidelity GAN inversion toolkit.

The public entry points live in submodules so that ``import egain`` stays cheap:

* :mod:`egain.generators` -- StyleGAN2 / SWAGAN generators and ``load_generator``;
* :mod:`egain.methods` -- the registry of inversion methods (``egain.methods.create``);
* :mod:`egain.metrics` -- SSIM, SCC, VIF, PSNR, LPIPS, identity and MagFace scores;
* :mod:`egain.data.synthfaces` -- the bundled procedural face world.
"""

from egain.errors import EgainError

__all__ = ["EgainError", "__version__"]
__version__ = "0.1.0"
