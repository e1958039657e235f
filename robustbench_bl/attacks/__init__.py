"""Named attacks run under an explicit threat model against a defended classifier.

The registry holds gradient attacks (the package's best-iterate PGD, AutoAttack's APGD-CE and
APGD-DLR from torchattacks, Foolbox's FGSM, C&W and DeepFool), the score-based Square attack
(torchattacks) and Foolbox's decision-based attacks. `run` returns per-example outcomes, judged
by the one judge (`judge`); `evaluate` turns them into tidy rows with AutoAttack-style flags.
"""

from robustbench_bl.attacks.pgd import pgd
from robustbench_bl.attacks.registry import (
    DECISION,
    GRADIENT,
    REGISTRY,
    SCORE,
    Attack,
    AttackSpec,
    check_options,
    make,
    names,
    spec,
)
from robustbench_bl.attacks.report import evaluate, flag_obfuscation, flags, judge_rows, summary_rows
from robustbench_bl.attacks.runner import (
    Judgement,
    Outcome,
    as_defended,
    check_epsilons,
    craft_nonadaptive,
    gradient_masking,
    judge,
    run,
)
from robustbench_bl.attacks.threats import (
    ATTACKER_STREAM,
    THREATS,
    Threat,
    ThreatModel,
    Vote,
    channel_label,
    straight_through,
    threat_model,
)

__all__ = [
    "ATTACKER_STREAM",
    "DECISION",
    "GRADIENT",
    "REGISTRY",
    "SCORE",
    "THREATS",
    "Attack",
    "AttackSpec",
    "Judgement",
    "Outcome",
    "Threat",
    "ThreatModel",
    "Vote",
    "as_defended",
    "channel_label",
    "check_epsilons",
    "check_options",
    "craft_nonadaptive",
    "evaluate",
    "flag_obfuscation",
    "flags",
    "gradient_masking",
    "judge",
    "judge_rows",
    "make",
    "names",
    "pgd",
    "run",
    "spec",
    "straight_through",
    "summary_rows",
    "threat_model",
]
