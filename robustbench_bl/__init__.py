"""robustbench_bl: band-limited CNNs, lossy input channels, attacks, probes and studies.

See DESIGN in the repository README; images are float tensors N x C x H x W in [0, 1].
"""

__version__ = "0.1.0"
from robustbench_bl.defense import Defended  # noqa: E402
from robustbench_bl.benchmark import benchmark  # noqa: E402
