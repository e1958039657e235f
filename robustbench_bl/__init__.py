"""robustbench_bl: band-limited CNNs, lossy input channels, attacks, probes and studies.

Images are float tensors N x C x H x W in [0, 1]; normalization is a layer of each model.
"""

from robustbench_bl.benchmark import benchmark
from robustbench_bl.defense import Defended

__version__ = "0.1.0"
__all__ = ["Defended", "benchmark", "__version__"]
