"""Per-example minimal perturbations found by decision-based attacks, compared between models
(second paper, section 2.3.3: does a band-limited model need larger perturbations than a full-spectrum one?)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from torch import Tensor, nn

from robustbench_bl import attacks
from robustbench_bl.attacks.registry import diameter

#: The second paper's decision-based attacks (registry names), each searching the smallest perturbation
#: itself: additive uniform (Linf) and Gaussian noise (Foolbox 2's scans), blended uniform noise,
#: Gaussian blur, salt-and-pepper and the boundary attack (L2).
ATTACKS = ("additive-uniform", "additive-gaussian", "blended-uniform", "gaussian-blur", "salt-and-pepper", "boundary")


def minimal_perturbations(
    model: nn.Module,
    attack: str,
    x: Tensor,
    y: Tensor,
    *,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """Tidy rows per example: whether `model` classifies it right, whether `attack` (a minimization
    attack, on the bare model, seeded) fooled it, and the size of the smallest fooling perturbation it
    found in its norm (NaN when none)."""
    made = attacks.make(attack, **(options or {}))
    if not made.minimizes:
        raise ValueError(
            f"attack must search the smallest perturbation itself; {attack!r} takes a fixed budget "
            f"(minimization attacks: {', '.join(ATTACKS)}, ...)"
        )
    out = attacks.run(
        model, attack, x, y, epsilons=(diameter(made.norm, x),), seed=seed, options=options, batch_size=batch_size
    )
    size = (out.linf if out.norm == "Linf" else out.l2)[-1]
    return [
        {
            "example": i,
            "clean_correct": bool(out.clean_correct[i]),
            "fooled": bool(out.fooled[-1, i]),
            "metric": f"min_{out.norm.lower()}",
            "value": size[i].item(),
        }
        for i in range(len(x))
    ]


def larger_share(
    table: pd.DataFrame, reference: Any = 0.0, *, by: str = "train_compress", pairs: Sequence[tuple[Any, Any]] = ()
) -> pd.DataFrame:
    """Per attack and pair (model, reference model), models named by their `by` column (default:
    every model other than `reference` against it): on the examples both classify right, the share
    on which the model needs the larger perturbation.

    An example the attack did not fool needs more than any found size (infinity); ties (both not
    fooled, say) count half, so 0.5 means no difference. Also: pairs, ties, the sign test's counts
    (`larger` of the `decided`, i.e. untied, pairs) and both median sizes.
    """
    sizes = table.assign(size=table.value.where(table.fooled.astype(bool), math.inf))
    keys = ["attack", "example"]
    pairs = list(pairs) or [(m, reference) for m in sizes[by].unique() if m != reference]
    rows = []
    for model, ref in pairs:
        base = sizes[sizes[by] == ref][[*keys, "clean_correct", "size"]]
        for attack, part in sizes[sizes[by] == model].groupby("attack"):
            pair = part.merge(base, on=keys, suffixes=("", "_reference"))
            pair = pair[pair.clean_correct.astype(bool) & pair.clean_correct_reference.astype(bool)]
            wins, tied = (
                int((pair["size"] > pair.size_reference).sum()),
                int((pair["size"] == pair.size_reference).sum()),
            )
            larger, ties = wins / max(len(pair), 1), tied / max(len(pair), 1)
            rows.append(
                {
                    "attack": attack,
                    by: model,
                    "reference": ref,
                    "pairs": len(pair),
                    "larger_share": larger + ties / 2,
                    "ties": ties,
                    "larger": wins,
                    "decided": len(pair) - tied,
                    "median": pair["size"].median(),
                    "median_reference": pair.size_reference.median(),
                }
            )
    return pd.DataFrame(rows)
