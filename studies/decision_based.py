"""`python studies/decision_based.py [options]` is `rbl study decision_based [options]` (robustbench_bl/studies/decision_based.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.decision_based import main

sys.exit(command_line(main))
