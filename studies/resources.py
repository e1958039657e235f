"""`python studies/resources.py [options]` is `rbl study resources [options]` (robustbench_bl/studies/resources.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.resources import main

sys.exit(command_line(main))
