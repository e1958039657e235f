"""`python attacks/attack.py [options]` is `rbl attack [options]` (robustbench_bl/attacks/command.py)."""

import sys

from robustbench_bl.attacks.command import main
from robustbench_bl.cli import command_line

sys.exit(command_line(main))
