"""`python studies/adaptive_vs_nonadaptive.py [options]` is `rbl study adaptive_vs_nonadaptive [options]` (robustbench_bl/studies/adaptive_vs_nonadaptive.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.adaptive_vs_nonadaptive import main

sys.exit(command_line(main))
