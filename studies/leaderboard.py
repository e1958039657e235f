"""`python studies/leaderboard.py [options]` is `rbl study leaderboard [options]` (robustbench_bl/studies/leaderboard.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.leaderboard import main

sys.exit(command_line(main))
