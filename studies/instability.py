"""`python studies/instability.py [options]` is `rbl study instability [options]` (robustbench_bl/studies/instability.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.instability import main

sys.exit(command_line(main))
