"""`python studies/noise_robustness.py [options]` is `rbl study noise_robustness [options]` (robustbench_bl/studies/noise_robustness.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.noise_robustness import main

sys.exit(command_line(main))
