"""A fixed, sound evaluation protocol for randomized and lossy defenses: `robustbench_bl.benchmark`.

RobustBench leaves such defenses out; this protocol picks the adaptive threat model the defense
calls for (BPDA where the channel masks gradients, EOT where it is random), runs AutoAttack's
APGD-CE and APGD-DLR, the package's best-iterate PGD, the score-based Square attack and a
decision-based attack, takes the worst case per example, repeats stochastic evaluations, and flags
gradient masking when a gradient-free attack beats the gradient ones.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustbench_bl import attacks
from robustbench_bl import data as datasets
from robustbench_bl.channels import Channel
from robustbench_bl.channels import make as make_channel
from robustbench_bl.defense import Defended
from robustbench_bl.evaluation import sanity, stats
from robustbench_bl.validation import check_choice, check_positive_int, check_range
from robustbench_bl.versions import versions

NORMS = ("Linf", "L2")
#: The suite per norm, each as (registry name, options): gradient attacks (run under the defense's
#: threat model), Square on the (EOT-averaged) scores, and one decision-based attack on the vote.
SUITES: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "Linf": (
        ("apgd-ce-linf", {}),
        ("apgd-dlr-linf", {}),
        ("pgd-linf", {}),
        ("square-linf", {}),
        ("hopskipjump", {"constraint": "linf"}),
    ),
    "L2": (
        ("apgd-ce-l2", {}),
        ("apgd-dlr-l2", {}),
        ("pgd-l2", {}),
        ("cw-l2", {}),
        ("square-l2", {}),
        ("hopskipjump", {"constraint": "l2"}),
    ),
}


#: The file name ending of a result document (`BenchmarkResult.save`), which `rbl report` collects.
RESULT_SUFFIX = ".benchmark.json"


#: AutoAttack's `rand` version for randomized defenses: APGD-CE and APGD-DLR (1 restart each, as
#: torchattacks runs them) with EOT over `RAND_EOT` draws a step.
RAND_SUITES: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "Linf": (("apgd-ce-linf", {}), ("apgd-dlr-linf", {})),
    "L2": (("apgd-ce-l2", {}), ("apgd-dlr-l2", {})),
}
RAND_EOT = 20
#: The protocol presets: the standard suite (`SUITES`) or AutoAttack's rand version (`RAND_SUITES`).
PROTOCOLS = ("standard", "rand")


@dataclass(frozen=True)
class BenchmarkResult:
    """`row`: the protocol's one result row (accuracies, 95% intervals, flags, the exact suite and
    every setting); `attacks`: the tidy rows of every attack and repeat behind it."""

    row: dict[str, Any]
    attacks: pd.DataFrame

    def document(self) -> dict[str, Any]:
        """The result as one JSON document to share and compare (RobustBench keeps one per model):
        model, data, threat model, defense, the attacker's threat and why, accuracies with 95%
        intervals, each attack's robust accuracy (after the attacks before it too, under the cascade),
        the sanity checks and the images they ran on, flags, forward passes, time, versions, seed."""
        r = self.row
        robust = self.attacks[self.attacks.metric == "robust_accuracy"]
        return {
            "protocol": r["protocol"],
            "model": r["model"],
            "data": {"dataset": r["dataset"], "source": r["data_source"], "n": r["n"], "seed": r["seed"]},
            "threat_model": {"norm": r["norm"], "eps": r["eps"]},
            "defense": {"channel": r["channel"], "votes": r["votes"], "stochastic": r["stochastic"]},
            "attacker": {
                "threat": r["threat"],
                "why": r["threat_reason"],
                "eot_samples": r["eot_samples"],
                "suite": r["suite"].split("; "),
                "cascade": r["cascade"],
                "repeats": r["repeats"],
            },
            "clean_accuracy": {
                "value": r["clean_accuracy"],
                "ci95": [r["clean_ci_low"], r["clean_ci_high"]],
                "per_repeat": json.loads(r["clean_accuracy_per_repeat"]),
            },
            "robust_accuracy": {
                "value": r["robust_accuracy"],
                "ci95": [r["robust_ci_low"], r["robust_ci_high"]],
                "every_repeat": r["robust_accuracy_every_repeat"],
                "per_repeat": json.loads(r["robust_accuracy_per_repeat"]),
            },
            "per_attack_robust_accuracy": {str(k): float(v) for k, v in robust.groupby("attack").value.mean().items()},
            "flags": {k.removeprefix("flag_"): bool(v) for k, v in r.items() if k.startswith("flag_")},
            "checks": json.loads(r["checks"]),
            "check_images": r["check_images"],
            "trustworthy": r["trustworthy"],
            "warnings": [w for w in r["warnings"].split("; ") if w],
            "forward_passes": r["forward_passes"],
            "seconds": r["seconds"],
            "versions": {k.removeprefix("version_"): v for k, v in r.items() if k.startswith("version_")},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write `document()` as JSON to `path` (a folder gets MODEL.benchmark.json); the file written."""
        target = Path(path).expanduser()
        if target.is_dir():
            target = target / (re.sub(r"[^A-Za-z0-9._-]+", "_", str(self.row["model"])) + RESULT_SUFFIX)
        target.write_text(json.dumps(self.document(), indent=2) + "\n", encoding="utf-8")
        return target

    @property
    def clean_accuracy(self) -> float:
        return float(self.row["clean_accuracy"])

    @property
    def robust_accuracy(self) -> float:
        return float(self.row["robust_accuracy"])


def threat_for(defended: Defended, x: torch.Tensor, y: torch.Tensor) -> attacks.Threat:
    """bpda where the channel masks gradients, eot where it is random, both when both, else whitebox."""
    masked = attacks.gradient_masking(defended, x, y) > 0
    return attacks.Threat(adaptive=True, bpda=masked, eot=defended.channel.stochastic)


def benchmark(
    model: nn.Module,
    channel: Channel | str | None = None,
    votes: int = 1,
    dataset: str = "cifar10",
    norm: str = "Linf",
    eps: float = 8 / 255,
    n: int = 1000,
    repeats: int = 5,
    seed: int = 0,
    *,
    data: datasets.UserData | None = None,
    eot_samples: int | None = None,
    data_root: str | os.PathLike[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
    precision: str = "auto",
    name: str | None = None,
    checks: str | Sequence[str] = "all",
    protocol: str = "standard",
    cascade: bool = True,
    check_images: int | None = None,
) -> BenchmarkResult:
    """Clean and worst-case robust accuracy of Defended(model, channel, votes) with 95% intervals.

    Runs the suite for `norm` (`SUITES`) on `n` class-balanced test images of `dataset` (or of
    `data`, your own: (x, y) tensors, a `data.Dataset` or a torch Dataset of (image, label)): gradient
    attacks under the threat model `threat_for` picks, a decision-based attack on the vote. An
    example counts as robust in a repeat only if its clean vote is right and no attack of the
    suite fools the vote. Stochastic defenses are evaluated `repeats` times (seeds seed..seed+r);
    `robust_accuracy` is the mean over repeats, `robust_accuracy_every_repeat` counts examples
    robust in all of them. `options` overrides attack settings by name (e.g. {'pgd-linf': {'steps': 10}}).
    `precision` is the gradient attacker's arithmetic (see `attacks.run`); the judge stays float32.
    `protocol` 'rand' runs AutoAttack's rand version instead (`RAND_SUITES`, EOT over 20 draws
    unless `eot_samples` says otherwise); `eot_samples` is 16 otherwise. Each repeat's clean and
    robust accuracy are kept (`*_per_repeat`): the spread of the final stochastic prediction.
    `checks` names the sanity checks run after the suite ('all', the default, or some of
    `sanity.CHECKS`; () for none): a failed one marks the result not trustworthy.
    `check_images`: the checks run on the first that many of the images (default: all of them; each
    check's cost grows with them, the suite's fooled examples do not need them).
    `cascade` (AutoAttack's way): each attack runs on the examples the attacks before it in the suite
    left robust, so the per-attack rows are the robust accuracy after that attack (cumulative); the
    worst case per example is the same as attacking every example with every attack, at a fraction
    of the cost once the first attack has fooled most. `cascade=False` runs every attack on every
    example (each attack's own robust accuracy). `name` labels the model in the result (default: its
    class name). `forward_passes` in the row counts the images that went through the model, attacks
    and judge together.
    """
    norm = check_choice(norm, "norm", NORMS)
    eps = check_range(eps, "eps", 0.0, math.inf, high_inclusive=False)
    repeats = check_positive_int(repeats, "repeats")
    n = check_positive_int(n, "n")
    seed = check_positive_int(seed, "seed", minimum=0)
    if isinstance(channel, str):
        channel = make_channel(channel)
    defended = Defended(model, channel, check_positive_int(votes, "votes"))
    if data is None:
        test = datasets.load(dataset, "test", root=data_root, limit=n, seed=seed)
    else:
        test = datasets.user_data(data).at_most(n, seed=seed)
    x, y = test.x, test.y
    runs = repeats if defended.channel.stochastic else 1
    protocol = check_choice(protocol, "protocol", PROTOCOLS)
    if eot_samples is None:
        eot_samples = RAND_EOT if protocol == "rand" else 16
    eot_samples = check_positive_int(eot_samples, "eot_samples")  # 0 is an error, not the default
    checked = len(x) if check_images is None else min(check_positive_int(check_images, "check_images"), len(x))
    suites = RAND_SUITES if protocol == "rand" else SUITES
    suite = [(name, {**opts, **(options or {}).get(name, {})}) for name, opts in suites[norm]]
    start = time.perf_counter()
    forwarded = [0]
    hook = model.register_forward_pre_hook(lambda _, args: forwarded.__setitem__(0, forwarded[0] + len(args[0])))
    try:
        threat = threat_for(defended, x, y)
        frames, clean, robust, first = _suite(
            defended, suite, x, y, threat, eps, eot_samples, seed, runs, norm, votes, progress, precision, cascade
        )
        first = {name: outcome.subset(slice(0, checked)) for name, outcome in first.items()}
        evaluation = sanity.Evaluation(
            defended,
            x[:checked],
            y[:checked],
            threat,
            norm,
            eps,
            eot_samples,
            seed,
            dict(options or {}),
            precision,
            first,
        )
        done = sanity.run_checks(evaluation, _check_names(checks))
    finally:
        hook.remove()
    per_attack = attacks.flag_obfuscation(pd.concat(frames, ignore_index=True).assign(warnings=""))
    clean_mean, robust_mean = torch.stack(clean).mean(0), torch.stack(robust).mean(0)
    row = _row(
        defended, test, threat, suite, runs, eot_samples, norm, eps, seed, clean_mean, robust_mean, robust, per_attack
    )
    row["model"] = name or type(model).__name__
    row["protocol"] = f"robustbench_bl.benchmark/{protocol}"
    row["clean_accuracy_per_repeat"] = json.dumps([round(c.mean().item(), 6) for c in clean])
    row["robust_accuracy_per_repeat"] = json.dumps([round(r.mean().item(), 6) for r in robust])
    failed = [c.name for c in done if c.passed is False]
    row["checks"] = json.dumps([c.to_json() for c in done])
    row["trustworthy"] = not failed
    if failed:
        note = f"evaluation not trustworthy: sanity check(s) failed: {', '.join(failed)}"
        row["warnings"] = "; ".join(w for w in (row["warnings"], note) if w)
    row["cascade"] = cascade
    row["check_images"] = checked
    row["forward_passes"] = forwarded[0]
    row["seconds"] = time.perf_counter() - start
    return BenchmarkResult(row, per_attack)


def _suite(
    defended: Defended,
    suite: list[tuple[str, dict[str, Any]]],
    x: torch.Tensor,
    y: torch.Tensor,
    threat: attacks.Threat,
    eps: float,
    eot_samples: int,
    seed: int,
    runs: int,
    norm: str,
    votes: int,
    progress: bool,
    precision: str,
    cascade: bool,
) -> tuple[list[pd.DataFrame], list[torch.Tensor], list[torch.Tensor], dict[str, attacks.Outcome]]:
    """Every attack of the suite in every repeat: the tidy frames, per repeat the clean and the
    robust outcome per example (robust: clean vote right and no attack fooled it), and the first
    repeat's outcome of each attack (what the sanity checks compare against). With `cascade`, an
    attack runs on the examples still robust after the ones before it and its outcome is cumulative."""
    frames, clean, robust = [], [], []
    first: dict[str, attacks.Outcome] = {}
    for r in range(runs):
        outcomes: list[attacks.Outcome] = []
        for name, opts in suite:
            run = partial(
                attacks.run,
                defended,
                name,
                threat=threat,
                epsilons=[eps],
                eot_samples=eot_samples,
                seed=seed + r,
                options=opts,
                progress=progress,
                precision=precision,
            )
            if cascade and outcomes:
                before = outcomes[-1]
                alive = torch.nonzero(before.robust[0]).flatten()
                outcome = before.extended(name, run(x[alive], y[alive]) if len(alive) else None, alive)
            else:
                outcome = run(x, y)
            outcomes.append(outcome)
            first.setdefault(name, outcome)
            frames.append(
                pd.DataFrame(attacks.summary_rows(outcome)).assign(
                    attack=name,
                    attack_kind=outcome.kind,
                    norm=norm,
                    threat=threat.name,
                    gradient_path=outcome.gradient_path,
                    attacker_precision=outcome.precision,
                    examples_attacked=outcome.attacked,
                    repeat=r,
                    channel=attacks.channel_label(defended.channel),
                    votes=votes,
                )
            )
        clean.append(outcomes[0].clean_correct.float())
        fooled = torch.stack([o.fooled[0] for o in outcomes]).any(0)
        robust.append((outcomes[0].clean_correct & ~fooled).float())
    return frames, clean, robust, first


def _check_names(checks: str | Sequence[str]) -> tuple[str, ...]:
    """The sanity checks asked for: 'all' or names from `sanity.CHECKS`."""
    if checks == "all":
        return sanity.CHECKS
    if isinstance(checks, str):
        checks = [checks]
    for name in checks:
        check_choice(name, "checks", sanity.CHECKS)
    return tuple(checks)


def _why(threat: attacks.Threat) -> str:
    """Why `threat_for` chose this threat model, in a sentence."""
    reasons = []
    if threat.bpda:
        reasons.append(
            "the channel masks gradients (zero or non-finite input gradients through it), so gradients pass it as the identity (BPDA)"
        )
    if threat.eot:
        reasons.append("the channel is random, so gradients average over draws (EOT)")
    return "; ".join(reasons) or "the channel is deterministic and passes gradients, so the attacks are plain white-box"


def _row(
    defended: Defended,
    test: datasets.Dataset,
    threat: attacks.Threat,
    suite: list[tuple[str, dict[str, Any]]],
    runs: int,
    eot_samples: int,
    norm: str,
    eps: float,
    seed: int,
    clean: torch.Tensor,
    robust: torch.Tensor,
    robust_runs: list[torch.Tensor],
    per_attack: pd.DataFrame,
) -> dict[str, Any]:
    """The protocol's result row: settings, the suite as run, accuracies with intervals, flags."""
    n = len(clean)
    clean_ci = stats.binomial_interval(clean.sum().item(), n)[1:]
    robust_ci = stats.binomial_interval(robust.sum().item(), n)[1:]
    gradient_threat = f"[{threat}, eot_samples={eot_samples}]" if threat.eot else f"[{threat}]"
    described = [
        f"{name}{'[vote]' if attacks.spec(name).kind == attacks.DECISION else gradient_threat}{opts if opts else ''}"
        for name, opts in suite
    ]
    masking = threat.bpda
    decision_wins = bool(per_attack["flag_decision_beats_gradient"].any())
    notes = [
        text
        for flag, text in (
            (masking, "the channel masks gradients: gradient attacks ran with bpda"),
            (defended.channel.stochastic, f"stochastic channel: eot with {eot_samples} draws, {runs} repeats"),
            (decision_wins, "a gradient-free attack beat the gradient attacks: gradients are likely obfuscated"),
        )
        if flag
    ]
    return {
        "protocol": "robustbench_bl.benchmark",
        "dataset": test.name,
        "data_source": test.source_kind,
        "n": n,
        "norm": norm,
        "eps": eps,
        "channel": attacks.channel_label(defended.channel),
        "stochastic": defended.channel.stochastic,
        "votes": defended.votes,
        "threat": threat.name,
        "threat_reason": _why(threat),
        "eot_samples": eot_samples if threat.eot else None,
        "suite": "; ".join(described),
        "repeats": runs,
        "seed": seed,
        "clean_accuracy": clean.mean().item(),
        "clean_ci_low": clean_ci[0],
        "clean_ci_high": clean_ci[1],
        "robust_accuracy": robust.mean().item(),
        "robust_ci_low": robust_ci[0],
        "robust_ci_high": robust_ci[1],
        "robust_accuracy_every_repeat": torch.stack(robust_runs).amin(0).mean().item(),
        "flag_gradient_masking": masking,
        "flag_stochastic": defended.channel.stochastic,
        "flag_decision_beats_gradient": decision_wins,
        "warnings": "; ".join(notes),
        **{f"version_{k}": v for k, v in versions().items()},
    }
