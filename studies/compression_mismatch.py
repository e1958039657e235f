"""`python studies/compression_mismatch.py [options]` is `rbl study compression_mismatch [options]` (robustbench_bl/studies/compression_mismatch.py)."""

import sys

from robustbench_bl.cli import command_line
from robustbench_bl.studies.compression_mismatch import main

sys.exit(command_line(main))
