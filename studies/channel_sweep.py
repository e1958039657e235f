"""`python studies/channel_sweep.py [options]` is `rbl study channel_sweep [options]` (robustbench_bl/studies/channel_sweep.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.channel_sweep import main

sys.exit(command_line(main))
