"""python -m robustbench_bl.zoo: the same as `rbl zoo`."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.zoo.command import main

sys.exit(command_line(main))
