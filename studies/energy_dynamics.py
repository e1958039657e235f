"""`python studies/energy_dynamics.py [options]` is `rbl study energy_dynamics [options]` (robustbench_bl/studies/energy_dynamics.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.energy_dynamics import main

sys.exit(command_line(main))
