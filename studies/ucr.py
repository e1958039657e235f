"""`python studies/ucr.py [options]` is `rbl study ucr [options]` (robustbench_bl/studies/ucr.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.ucr import main

sys.exit(command_line(main))
