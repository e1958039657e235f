"""`python studies/conv_error.py [options]` is `rbl study conv_error [options]` (robustbench_bl/studies/conv_error.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.conv_error import main

sys.exit(command_line(main))
