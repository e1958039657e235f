"""Attack results as tidy rows: `evaluate` (one attack, one threat model) with AutoAttack-style
flags, and `flag_obfuscation` over a table of attacks."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from robustbench_bl.attacks.registry import DECISION, GRADIENT, spec
from robustbench_bl.attacks.runner import Outcome, as_defended, judge, run
from robustbench_bl.attacks.threats import Threat, channel_label
from robustbench_bl.channels import Channel
from robustbench_bl.channels import make as make_channel
from robustbench_bl.defense import Defended
from robustbench_bl.evaluation import stats
from robustbench_bl.versions import versions


def evaluate(model_or_defended: nn.Module, attack: str, *args: Any, **kwargs: Any) -> pd.DataFrame:
    """Tidy rows (metric, value, epsilon and every setting) for one attack under one threat model:
    `run` with the same arguments (x, y, threat, epsilons, eot_samples, seed, transfer, options,
    batch_size, progress, precision), its outcome as rows.

    Metrics: clean_accuracy and attack_seconds (epsilon NaN); per epsilon robust_accuracy (the
    defended vote stays right; never above clean), success_rate (among clean-correct examples),
    and l2/linf median and mean of the successful perturbations. Flags: gradient masking without
    bpda, a stochastic defense attacked without eot (see `flags`; the sentences are in `warnings`).
    """
    defended = as_defended(model_or_defended)
    try:
        request = inspect.signature(run).bind(defended, attack, *args, **kwargs)
    except TypeError as err:
        raise TypeError(f"evaluate takes attacks.run's arguments: {err}") from None
    request.apply_defaults()
    given = request.arguments
    threat = Threat.parse(given["threat"])
    transfer = given["transfer"]
    if isinstance(transfer, str):
        transfer = given["transfer"] = make_channel(transfer)
    out = run(*request.args, **request.kwargs)
    eot_samples, seed, options = given["eot_samples"], given["seed"], given["options"]
    settings = {
        "attack": attack,
        "attack_kind": out.kind,
        "norm": out.norm,
        "threat": threat.name,
        "gradient_path": out.gradient_path,
        "channel": channel_label(defended.channel),
        "stochastic": defended.channel.stochastic,
        "votes": defended.votes,
        "eot_samples": eot_samples if threat.eot and out.kind != DECISION else None,
        "transfer_from": None if transfer is None else channel_label(transfer),
        "seed": seed,
        "n": len(out.clean_correct),
        "options": json.dumps({**spec(attack).defaults, **(options or {})}, sort_keys=True, default=str),
        "distortion": out.distortion,
        "masked_fraction": out.masked_fraction,
        "attacker_precision": out.precision,
        **flags(out, threat, defended.channel),
        **{f"version_{k}": v for k, v in versions().items()},
    }
    return pd.DataFrame([{**settings, **row} for row in summary_rows(out)])


def summary_rows(out: Outcome) -> list[dict[str, Any]]:
    """The metric rows of an outcome (without settings)."""
    rows = [
        {"metric": "clean_accuracy", "epsilon": math.nan, "value": _mean(out.clean_correct)},
        {"metric": "attack_seconds", "epsilon": math.nan, "value": out.seconds},
    ]
    for e, eps in enumerate(out.epsilons):
        sizes = {"l2": out.l2[e], "linf": out.linf[e]}
        attacked = out.clean_correct
        rows.append({"metric": "robust_accuracy", "epsilon": eps, "value": _mean(out.robust[e])})
        rows.append(
            {
                "metric": "success_rate",
                "epsilon": eps,
                "value": _mean(out.fooled[e][attacked]) if attacked.any() else math.nan,
            }
        )
        for norm, size in sizes.items():
            found = size[out.fooled[e]]
            rows.append(
                {"metric": f"{norm}_median", "epsilon": eps, "value": found.median().item() if len(found) else math.nan}
            )
            rows.append(
                {"metric": f"{norm}_mean", "epsilon": eps, "value": found.mean().item() if len(found) else math.nan}
            )
    return rows


def flags(out: Outcome, threat: Threat, channel: Channel) -> dict[str, Any]:
    """AutoAttack-style warnings for one attack: booleans plus a readable `warnings` sentence."""
    masking = out.masked_fraction > 0 and not threat.bpda and out.kind == GRADIENT
    no_eot = channel.stochastic and not threat.eot and out.kind != DECISION
    notes = []
    if masking:
        notes.append(f"defended gradients are zero or NaN on {out.masked_fraction:.0%} of examples: use threat='bpda'")
    if no_eot:
        notes.append("stochastic channel attacked without eot: use threat='eot' (or 'bpda+eot')")
    return {"flag_gradient_masking": masking, "flag_stochastic_without_eot": no_eot, "warnings": "; ".join(notes)}


def flag_obfuscation(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `flag_decision_beats_gradient` to rows from several attacks (AutoAttack's check): True
    where, at the same channel, votes, norm and epsilon, a gradient-free attack (score- or
    decision-based) leaves lower robust accuracy than every gradient-based one, a sign of
    obfuscated gradients."""
    keys = ["channel", "votes", "norm", "epsilon"]
    robust = frame[frame.metric == "robust_accuracy"].assign(free=lambda f: f.attack_kind != GRADIENT)
    best = robust.pivot_table(index=keys, columns="free", values="value", aggfunc="min")
    beaten = best[True] < best[False] if {True, False} <= set(best.columns) else pd.Series(False, index=best.index)
    marked = frame.merge(beaten.rename("flag_decision_beats_gradient").reset_index(), on=keys, how="left")
    marked["flag_decision_beats_gradient"] = marked["flag_decision_beats_gradient"].fillna(False).astype(bool)
    hit = marked["flag_decision_beats_gradient"]
    note = "a gradient-free attack beats the gradient-based ones: gradients are likely obfuscated"
    marked.loc[hit, "warnings"] = marked.loc[hit, "warnings"].map(lambda s: f"{s}; {note}" if s else note)
    return marked


def _mean(mask: Tensor) -> float:
    return mask.float().mean().item() if len(mask) else math.nan


@torch.no_grad()
def judge_rows(defended: Defended, x: Tensor, y: Tensor, adversarials: Mapping[str, Tensor]) -> list[dict[str, Any]]:
    """Tidy rows from `judge` (the one judge): the defended vote's clean accuracy and, per
    attack, its robust accuracy with the attack's median L2; `correct` packs the per-image outcomes."""
    clean = defended.predict(x)[0]
    rows: list[dict[str, Any]] = [
        {
            "metric": "clean_accuracy",
            "attack": "none",
            "value": (clean == y).float().mean().item(),
            "correct": stats.pack(clean == y),
        }
    ]
    for name, adv in adversarials.items():
        verdict = judge(defended, x, y, [adv], clean_labels=clean)
        size = (adv - x).flatten(1).norm(dim=1).median().item()
        rows.append(
            {
                "metric": "robust_accuracy",
                "attack": name,
                "value": verdict.robust[0].float().mean().item(),
                "correct": stats.pack(verdict.robust[0]),
                "attack_l2_median": size,
            }
        )
    return rows
