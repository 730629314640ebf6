"""Pure-PyTorch building blocks of style-based generators: no compiled extensions, any device, ONNX-exportable.

* :mod:`egain.ops.equalized` -- equalised-lr linear/conv layers, fused leaky ReLU (bias, gain sqrt 2), pixel norm.
* :mod:`egain.ops.upfirdn` -- FIR up/down-sampling (``upfirdn2d``), ``Blur``, ``Upsample``, ``Downsample``.
* :mod:`egain.ops.modconv` -- modulated convolution, grouped ("fused") and weight-shared forms.
* :mod:`egain.ops.wavelets` -- orthonormal Haar DWT / IWT (SWAGAN layout).
"""

from egain.ops.equalized import (
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    fused_leaky_relu,
    pixel_norm,
)
from egain.ops.modconv import ModulatedConv2d, choose_mode, modulated_conv2d
from egain.ops.upfirdn import Blur, Downsample, Upsample, make_kernel, upfirdn2d
from egain.ops.wavelets import HaarTransform, InverseHaarTransform, haar_dwt, haar_iwt

__all__ = [
    "Blur",
    "Downsample",
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "HaarTransform",
    "InverseHaarTransform",
    "ModulatedConv2d",
    "Upsample",
    "choose_mode",
    "fused_leaky_relu",
    "haar_dwt",
    "haar_iwt",
    "make_kernel",
    "modulated_conv2d",
    "pixel_norm",
    "upfirdn2d",
]
