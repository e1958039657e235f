"""Evaluation on top of the attacks: the strong benchmark protocol, instability probes (M1, M2),
paired statistics and verdicts, critical differences and the leaderboard ranking.

Modules are imported where used (`from robustbench_bl.evaluation import probes`), so importing
this package costs nothing.
"""
