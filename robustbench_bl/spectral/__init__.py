"""Band-limited convolution (Dziedzic et al., ICML 2019): conv through a low-frequency band, in 1D, 2D and 3D.

Layers, functional forms and bandlimit(model) keep nn.Conv's interface; masks live in
`compression`, the per-shape transforms (partial DFT or pruned FFT) in `transforms`, the
per-frequency channel products in `backends`.
"""

from robustbench_bl.spectral import compression
from robustbench_bl.spectral.convert import bandlimit
from robustbench_bl.spectral.functional import band_limited_conv1d, band_limited_conv2d, band_limited_conv3d
from robustbench_bl.spectral.layers import BandLimitedConv1d, BandLimitedConv2d, BandLimitedConv3d

__all__ = [
    "BandLimitedConv1d",
    "BandLimitedConv2d",
    "BandLimitedConv3d",
    "band_limited_conv1d",
    "band_limited_conv2d",
    "band_limited_conv3d",
    "bandlimit",
    "compression",
]
