"""`python studies/accuracy_vs_compression.py [options]` is `rbl study accuracy_vs_compression [options]` (robustbench_bl/studies/accuracy_vs_compression.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.accuracy_vs_compression import main

sys.exit(command_line(main))
