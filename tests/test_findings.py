"""The studies' verdicts on hand-built result tables: each finding says HOLDS when the data support
the paper's claim, DOES NOT HOLD when they contradict it, INCONCLUSIVE when the interval straddles
the threshold, and its estimates equal the hand-computed differences."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from robustbench_bl import studies
from robustbench_bl.evaluation import stats

N = 2000


def bits(share: float, seed: int) -> str:
    """Packed outcomes of N examples with exactly round(share * N) right, in a seeded order."""
    right = np.zeros(N, dtype=bool)
    right[: round(share * N)] = True
    return stats.pack(np.random.default_rng(seed).permutation(right))


def verdict(finding: stats.Finding) -> str:
    return finding.verdict.value


def estimates(finding: stats.Finding) -> list[float]:
    return [c.estimate for c in finding.claims]


def mismatch_table(accuracy: dict[tuple[float, float], float], same: tuple[float, ...] = ()) -> pd.DataFrame:
    """Rows per (train, test rate); the test rates in `same` keep the band of 50% in every layer."""
    rows = [
        {
            "train_compress": tr,
            "seed_offset": 0,
            "test_compress": te,
            "n": N,
            "correct": bits(a, i),
            "value": a,
            "discarded_per_layer": json.dumps({"conv": 0.5 if te in same else te}),
        }
        for i, ((tr, te), a) in enumerate(accuracy.items())
    ]
    return pd.DataFrame(rows)


def test_compression_mismatch_does_not_count_a_test_rate_with_the_very_same_band_as_another_rate() -> None:
    """25% keeps 50%'s band in every layer here: for the 50% model it is the same computation (0.95,
    as good as its own rate), so the best *other* rate is 0% (0.60), not 25%."""
    module = studies.module("compression_mismatch")
    table = mismatch_table({(0.5, 0.0): 0.6, (0.5, 0.5): 0.8, (0.5, 0.25): 0.8}, same=(0.25,))
    finding = module.finding(table)
    assert estimates(finding) == pytest.approx([0.2], abs=1e-9)
    assert any("test rate(s) 25% keep the very band of its own rate" in n for n in finding.notes)
    assert module.bands(table)[0.25].tolist() == [0.5]


@pytest.mark.parametrize(("off_diagonal", "word"), [(0.70, "HOLDS"), (0.80, "INCONCLUSIVE"), (0.85, "DOES NOT HOLD")])
def test_compression_mismatch_judges_the_diagonal_against_the_best_other_rate(off_diagonal: float, word: str) -> None:
    module = studies.module("compression_mismatch")
    # Model 0% is best at 0% by 10 points; model 50% at 50% scores 0.80, its best other rate `off_diagonal`.
    table = mismatch_table(
        {(0.0, 0.0): 0.9, (0.0, 0.5): 0.8, (0.5, 0.0): 0.6, (0.5, 0.5): 0.8, (0.5, 0.25): off_diagonal}
    )
    text = module.finding(table)
    assert verdict(text) == word
    assert estimates(text) == pytest.approx([0.1, 0.8 - off_diagonal], abs=1e-9)


#: (architecture, rate, seed offset, epochs), arithmetic -> accuracy at Gaussian std 0, 0.1, 0.5, 1, 2 (and
#: the same at Foolbox epsilon 0, 0.02, 0.1, 0.3, 1). The plain model keeps > 0.2 (2 x chance) at 0.1
#: and 0.5 only: those are the informative levels.
PLAIN = (0.9, 0.5, 0.25, 0.1, 0.1)


def noise_table(curves: dict[tuple[tuple[str, float, int, int], str], tuple[float, ...]]) -> pd.DataFrame:
    rows = []
    for i, ((model, arithmetic), shares) in enumerate(curves.items()):
        for noise, variant, levels in (
            ("gauss", "normalized", (0, 0.1, 0.5, 1, 2)),
            ("uniform", "foolbox", (0, 0.02, 0.1, 0.3, 1)),
        ):
            for j, (level, share) in enumerate(zip(levels, shares)):
                rows.append(
                    dict(
                        zip(("model", "train_compress", "seed_offset", "train_epochs"), model),
                        arithmetic=arithmetic,
                        noise=noise,
                        variant=variant,
                        level=float(level),
                        metric="accuracy",
                        n=N,
                        value=share,
                        correct=bits(share, i * 100 + j),
                    )
                )
    return pd.DataFrame(rows)


def shifted(d: float, far: float = 0.35) -> tuple[float, ...]:
    """The plain curve plus d at the informative levels and `far` (anything) where the plain model is at chance."""
    return (0.85, PLAIN[1] + d, PLAIN[2] + d, far, far)


@pytest.mark.parametrize(("d", "word"), [(0.1, "HOLDS"), (0.0, "INCONCLUSIVE"), (-0.1, "DOES NOT HOLD")])
def test_noise_robustness_judges_the_informative_levels_only(d: float, word: str) -> None:
    """Band-limited minus plain is d at std 0.1 and 0.5 (where the plain model keeps > 2 x chance) and
    +0.25 where it is at chance: the estimate is d on both judged axes, the chance levels left out."""
    finding = studies.module("noise_robustness").finding(
        noise_table(
            {
                (("fastnet", 0.0, 0, 6), "fp32"): PLAIN,
                (("fastnet", 0.5, 0, 6), "fp32"): shifted(d),
                (("fastnet", 0.0, 0, 1), "fp32"): (0.8, 0.45, 0.2, 0.1, 0.1),
                (("fastnet", 0.0, 0, 6), "bf16-rounded"): PLAIN,
            }
        )
    )
    assert verdict(finding) == word
    assert estimates(finding) == pytest.approx([d, d], abs=1e-9)
    assert all("[levels 0.1-0.5]" in c.label or "[levels 0.02-0.1]" in c.label for c in finding.claims)
    notes = "\n".join(finding.notes)
    assert "0% (1 ep.) (clean 0.800)" in notes and "the RPA comparator" in notes


def test_noise_robustness_judges_each_seed_pooled_and_the_order_of_rates() -> None:
    """Seed 0: 50% +0.10, 85% +0.20 over plain; seed 1: 50% +0.04. Claims per axis: 50% - 0% per seed,
    pooled (the mean, +0.07), 85% - 0%, and 85% - 50% on 50%'s own informative levels (all four: it
    keeps 0.35 where plain is at chance, and 85% ties with it there: +0.10, +0.10, 0, 0 -> +0.05)."""
    finding = studies.module("noise_robustness").finding(
        noise_table(
            {
                (("fastnet", 0.0, 0, 6), "fp32"): PLAIN,
                (("fastnet", 0.5, 0, 6), "fp32"): shifted(0.1),
                (("fastnet", 0.85, 0, 6), "fp32"): shifted(0.2),
                (("fastnet", 0.0, 1, 6), "fp32"): PLAIN,
                (("fastnet", 0.5, 1, 6), "fp32"): shifted(0.04),
            }
        )
    )
    gauss = {c.label.split("[Fig. 6]: ")[1].split(" [")[0]: c.estimate for c in finding.claims if "Fig. 6" in c.label}
    assert gauss == pytest.approx(
        {
            "fastnet 50% (6 ep.) - fastnet 0% (6 ep.)": 0.1,
            "fastnet 50% seed +1 (6 ep.) - fastnet 0% seed +1 (6 ep.)": 0.04,
            "fastnet 50% - 0%, pooled over 2 seeds": 0.07,
            "fastnet 85% (6 ep.) - fastnet 0% (6 ep.)": 0.2,
            "fastnet 85% (6 ep.) - fastnet 50% (6 ep.)": 0.05,
        },
        abs=1e-9,
    )
    assert len(finding.claims) == 10 and "family-wise level 99.50%" in str(finding)


@pytest.mark.parametrize(("d", "word"), [(0.1, "HOLDS"), (-0.1, "DOES NOT HOLD")])
def test_noise_robustness_judges_the_whitening_free_family_and_notes_the_confound(d: float, word: str) -> None:
    """The whitening-free family is judged like the whitened one (its 50% minus its 0%), and each
    whitening-free model minus its whitened twin is a note: +d at 0%, 0 at 50%."""
    finding = studies.module("noise_robustness").finding(
        noise_table(
            {
                (("fastnet", 0.0, 0, 6), "fp32"): PLAIN,
                (("fastnet", 0.5, 0, 6), "fp32"): shifted(0.1),
                (("fastnet_nw", 0.0, 0, 6), "fp32"): shifted(d, far=0.1),
                (("fastnet_nw", 0.5, 0, 6), "fp32"): shifted(0.1),
            }
        )
    )
    free = [c for c in finding.claims if "Fig. 6" in c.label and "fastnet_nw 50% (6 ep.) - fastnet_nw 0%" in c.label]
    assert [c.estimate for c in free] == pytest.approx([0.1 - d], abs=1e-9)
    confound = [n for n in finding.notes if n.startswith("whitening confound") and "Fig. 6" in n]
    assert len(confound) == 2
    assert f"confound ({word} that the free one is more robust): Gaussian" in confound[0]
    assert "fastnet_nw 0% (6 ep.) - fastnet 0% (6 ep.)" in confound[0] and f"{d:+.3f}" in confound[0]
    assert "fastnet_nw 50% (6 ep.) - fastnet 50% (6 ep.)" in confound[1] and "+0.000" in confound[1]


def accuracy_table(quarter: float, half: float, energy: float) -> pd.DataFrame:
    rows = [
        ("static", 0.0, 0.0, 0.9),
        ("static", 0.25, 0.3, quarter),
        ("static", 0.5, 0.6, half),
        ("static", 0.85, 0.9, 0.5),
        ("energy", 0.95, 0.3, energy),
    ]
    return pd.DataFrame(
        [
            # one order for all: the more accurate model is right on a superset of images (paired, as real models are)
            dict(scheme=s, level=lv, seed_offset=0, discarded=d, n=N, value=a, correct=bits(a, 0), metric="accuracy")
            for s, lv, d, a in rows
        ]
    )


def test_table_1s_loss_is_interpolated_and_extended_past_50_percent() -> None:
    """93.69 -> 92.89 at 30% (0.80 points); 0.625 at 25%; past 50% along 40-50%'s 0.29 points per 10%."""
    loss = studies.module("accuracy_vs_compression").paper_loss
    assert [loss(0.0), loss(0.25), loss(0.3), loss(0.5), loss(0.6)] == pytest.approx(
        [0.0, 0.00625, 0.0080, 0.0137, 0.0166], abs=1e-12
    )


@pytest.mark.parametrize(
    ("quarter", "half", "energy", "word"),
    [
        (0.895, 0.89, 0.75, "HOLDS"),  # losses 0.5 / 1 point (allowed 1.8 / 2.66); energy 14.5 points below static
        (0.895, 0.85, 0.86, "DOES NOT HOLD"),  # 5 points lost at 50% (60% discarded)
        (0.895, 0.89, 0.93, "DOES NOT HOLD"),  # energy above static: against the paper
        (0.882, 0.8734, 0.882, "INCONCLUSIVE"),  # each loss at its allowance; energy ties with static
    ],
)
def test_accuracy_vs_compression_judges_table_1s_curve_and_energy_at_equal_fraction(
    quarter: float, half: float, energy: float, word: str
) -> None:
    """Each static model against the paper's loss at the fraction it discards + 1 point; energy (30%
    discarded) against static at 30%, i.e. the 25% model."""
    finding = studies.module("accuracy_vs_compression").finding(accuracy_table(quarter, half, energy))
    assert verdict(finding) == word
    half_bits = round(half * N) / N
    assert estimates(finding) == pytest.approx([quarter - 0.9, half_bits - 0.9, energy - quarter], abs=1e-9)
    assert [c.threshold for c in finding.claims[:2]] == pytest.approx([-0.018, -0.0266], abs=1e-12)


@pytest.mark.parametrize(("larger", "word"), [(300, "HOLDS"), (250, "INCONCLUSIVE"), (200, "DOES NOT HOLD")])
def test_decision_based_is_a_sign_test_with_an_exact_binomial_interval(larger: int, word: str) -> None:
    from scipy.stats import binomtest

    shares = pd.DataFrame(
        [
            dict(
                attack="boundary",
                member="50%",
                reference="0%",
                pairs=520,
                ties=20 / 520,
                larger=larger,
                decided=500,
                median=1.0,
                median_reference=1.0,
                larger_share=0.5,
            )
        ]
    )
    text = studies.module("decision_based").finding(shares)
    assert verdict(text) == word and "50% vs 0%, boundary" in str(text)
    ci = binomtest(larger, 500).proportion_ci(method="exact")
    assert f"[{ci.low:+.3f}, {ci.high:+.3f}]" in str(text) and estimates(text) == [
        pytest.approx(larger / 500, abs=5e-4)
    ]


@pytest.mark.parametrize(("robust", "word"), [(0.76, "HOLDS"), (0.64, "INCONCLUSIVE"), (0.50, "DOES NOT HOLD")])
def test_channel_sweep_judges_recovery_with_an_exact_binomial_interval(robust: float, word: str) -> None:
    """Recovery robust / 0.8 against 0.80 (the thesis's ~0.91 less 0.11), exact binomial over 200 images."""
    from scipy.stats import binomtest

    per_attack = pd.DataFrame(
        [
            {
                "channel": c,
                "attack": "cw-l2",
                "strength": 0.5,
                "distortion": 1.0,
                "robust": robust,
                "bare": 0.8,
                "n": 200,
            }
            for c in ("fft", "jpeg")
        ]
    )
    text = studies.module("channel_sweep").finding(per_attack, [])
    assert verdict(text) == word  # JPEG is a note, not a claim
    ci = binomtest(round(robust * 200), 200).proportion_ci(method="exact")
    assert estimates(text)[0] == pytest.approx(robust / 0.8, abs=5e-4)
    assert f"[{ci.low / 0.8:+.3f}, {ci.high / 0.8:+.3f}]" in str(text).splitlines()[1]
    assert "not judged (JPEG" in str(text)


def test_channel_sweep_recovery_of_a_bare_model_right_on_nothing_decides_nothing() -> None:
    row = {"channel": "fft", "attack": "cw-l2", "strength": 0.5, "distortion": 1.0, "robust": 0.0, "bare": 0.0, "n": 6}
    text = studies.module("channel_sweep").finding(pd.DataFrame([row]), [])
    assert verdict(text) == "INCONCLUSIVE" and "recovery: +nan [+0.000, +inf]" in str(text)


def test_decision_based_with_no_untied_pair_decides_nothing() -> None:
    row = dict(attack="boundary", member="50%", reference="0%", pairs=4, ties=1.0, larger=0, decided=0)
    row |= dict(median=1.0, median_reference=1.0, larger_share=0.5)
    text = studies.module("decision_based").finding(pd.DataFrame([row]))
    assert verdict(text) == "INCONCLUSIVE" and "larger in 0 of 0 untied pairs" in str(text)
    assert "+nan [+0.000, +1.000]" in str(text)


def test_resources_judges_time_by_a_t_interval_over_pairs_and_memory_exactly() -> None:
    import json

    columns = ("impl", "compress_rate", "metric", "relative", "pair_ratios")
    rows = [
        ("band-limited", 0.5, "epoch_seconds", 0.7, json.dumps([0.68, 0.7, 0.72])),
        ("band-limited", 0.5, "memory_bytes", 1.1, None),
        ("conv", 0.0, "epoch_seconds", 0.5, None),
        ("conv", 0.0, "memory_bytes", 1.0, None),
    ]
    records = [dict(zip(columns, r), precision="fp32", memory_kind="saved") for r in rows]
    text = studies.module("resources").finding(pd.DataFrame(records))
    assert verdict(text) == "DOES NOT HOLD"  # memory 1.1x does not fall
    logs = np.log([0.68, 0.7, 0.72])
    mean, lo, hi = stats.mean_interval(logs)
    assert f"{-mean:+.3f} [{-hi:+.3f}, {-lo:+.3f}]" in str(text) and "HOLDS" in str(text).splitlines()[1]
    assert estimates(text)[1] == pytest.approx(-np.log(1.1), abs=5e-4)


@pytest.mark.parametrize(("end", "word"), [(0.4, "HOLDS"), (0.8, "DOES NOT HOLD")])
def test_energy_dynamics_checks_the_direction_the_seed_states(end: float, word: str) -> None:
    """conv2 (300 coefficients) starts at 0.6 discarded and ends at `end` (+- 0.01 over seeds); conv1
    (100 coefficients) stays at 0.7: the network's compression, weighted by size, falls by
    0.75 x (0.6 - end), which holds for a fall and not for a rise; each layer's path is a note."""
    layers = (("conv1", False, 100, lambda e: 0.7), ("conv2", True, 300, lambda e: 0.6 if e == 0 else end))
    rows = [
        dict(
            energy=0.95,
            layer=layer,
            module=f"m.{layer}",
            input_learned=learned,
            coefficients=size,
            seed=s,
            epoch=e,
            value=value(e) + 0.01 * (s - 1) * (e > 0),
        )
        for s in range(3)
        for e in range(3)
        for layer, learned, size, value in layers
    ]
    text = studies.module("energy_dynamics").finding(pd.DataFrame(rows))
    assert verdict(text) == word
    assert estimates(text) == [pytest.approx(0.75 * (0.6 - end), abs=1e-9)]
    assert "conv1 (m.conv1, input not learned): 70.0% -> 70.0% -> 70.0%, fall +0.000" in str(text)
    assert f"conv2 (m.conv2, learned input): 60.0% -> {end:.1%} -> {end:.1%}, fall {0.6 - end:+.3f}" in str(text)


@pytest.mark.parametrize(("model", "unlearned"), [("lenet", 1), ("fastnet", 2), ("fastnet_nw", 1)])
def test_energy_dynamics_judges_only_layers_whose_input_is_learned(model: str, unlearned: int) -> None:
    """A FastNet's frozen whitening leaves the next layer's input unlearned too; a learned stem does not."""
    from robustbench_bl import models
    from robustbench_bl.spectral import BandLimitedConv2d, bandlimit

    net = bandlimit(models.make(model, 10, 3, image_size=32), energy=0.9)
    layers = [name for name, module in net.named_modules() if isinstance(module, BandLimitedConv2d)]
    assert studies.module("energy_dynamics").fixed_input_layers(net, layers) == set(layers[:unlearned])


def ucr_table(at_own: float) -> pd.DataFrame:
    """Two data sets (N and N // 2 series); the 50%-trained model scores `at_own` at 50% and 0.80 / 0.70
    at 0% / 85%; the 0%-trained model 0.90 at 0%, 0.85 at 50%, 0.60 at 85%."""
    accuracy = {
        (0.0, 0.0): 0.9,
        (0.0, 0.5): 0.85,
        (0.0, 0.85): 0.6,
        (0.5, 0.0): 0.8,
        (0.5, 0.5): at_own,
        (0.5, 0.85): 0.7,
    }
    rows = []
    for d, (name, n) in enumerate((("A", N), ("B", N // 2))):
        for i, ((train, test), a) in enumerate(accuracy.items()):
            right = np.zeros(n, dtype=bool)
            right[: round(a * n)] = True
            rows.append(
                dict(
                    dataset=name,
                    train_compress=train,
                    test_compress=test,
                    seed=0,
                    n=n,
                    value=a,
                    correct=stats.pack(np.random.default_rng(10 * d + i).permutation(right)),
                )
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("at_own", "word"), [(0.86, "HOLDS"), (0.80, "INCONCLUSIVE"), (0.72, "DOES NOT HOLD")])
def test_ucr_judges_each_model_at_its_own_rate_against_the_best_other(at_own: float, word: str) -> None:
    """Claims: 50% - 0% trained and tested (equivalence, at_own - 0.90 against -2 points), then per train
    rate own minus best other: 0%: 0.90 - 0.85; 50%: at_own - 0.80."""
    finding = studies.module("ucr").finding(ucr_table(at_own))
    assert estimates(finding) == pytest.approx([at_own - 0.9, 0.05, at_own - 0.8], abs=1e-9)
    assert [c.verdict.value for c in finding.claims[1:]] == ["HOLDS", word]
    assert "models trained at 50%, average ranks" in "\n".join(finding.notes)


def split_bits(tuning: np.ndarray, on_tuning: float, on_judged: float) -> str:
    """Packed outcomes with exactly these accuracies on the tuning and on the judged images."""
    right = np.zeros(len(tuning), dtype=bool)
    for mask, share in ((tuning, on_tuning), (~tuning, on_judged)):
        index = np.flatnonzero(mask)
        right[index[: round(share * len(index))]] = True
    return stats.pack(right)


def test_channel_sweep_tunes_on_one_half_and_judges_the_other() -> None:
    """fft scores 0.80 / 0.60 (tuning / judged) at 0.3 and 0.70 / 0.90 at 0.6 after C&W: tuning picks 0.3,
    judged there at 0.60 / bare 0.90 (peeking would pick 0.6 and report 1.0)."""
    from robustbench_bl.studies.channel_setup import tuning_split

    module = studies.module("channel_sweep")
    tuning = tuning_split(N, seed=0)
    assert tuning.sum() == N // 2
    rows = [("identity", 0.0, 0.0, "none", "clean_accuracy", 0.9, 0.9)]
    for attack in ("cw-l2", "pgd-linf-minimal", "pgd-linf"):
        rows += [("identity", 0.0, 0.0, attack, "robust_accuracy", 0.0, 0.0)]
        rows += [
            ("fft", 0.3, 1.0, attack, "robust_accuracy", 0.8, 0.6),
            ("fft", 0.6, 2.0, attack, "robust_accuracy", 0.7, 0.9),
        ]
    table = pd.DataFrame(
        [
            dict(
                channel=c,
                strength=s,
                distortion=d,
                attack=a,
                metric=m,
                value=(t + j) / 2,
                correct=split_bits(tuning, t, j),
            )
            for c, s, d, a, m, t, j in rows
        ]
    )
    per_attack = module.tuned(table, tuning)
    assert list(per_attack.strength) == [0.3] * 3 and list(per_attack.robust) == pytest.approx([0.6] * 3)
    finding = module.finding(per_attack, [])
    assert estimates(finding) == pytest.approx([0.6 / 0.9] * 2)  # the thesis's two attacks; PGD 8/255 is a note
    assert verdict(finding) == "DOES NOT HOLD" and finding.claims[0].threshold == 0.8
    assert any(n.startswith("strong check, not the thesis's setting") for n in finding.notes)


def adaptive_table(first_fooled: dict[tuple[str, str], float | np.ndarray], n: int = 200) -> pd.DataFrame:
    """Budgets 1, 2, 4, 8 (x 1/255); every example classified right and fooled from `first_fooled`
    on (x 1/255; inf: never; one value or one per example) per (channel, attacker)."""
    grid = [e / 255 for e in (1, 2, 4, 8)]
    rows = []
    for (channel, attacker), first in first_fooled.items():
        base = dict(channel=channel, attacker=attacker, n=n)
        rows.append(
            dict(base, metric="clean_accuracy", epsilon=np.nan, value=1.0, correct=stats.pack(np.ones(n, bool)))
        )
        for eps in grid:
            robust = np.full(n, eps < first / 255)
            rows.append(
                dict(base, metric="robust_accuracy", epsilon=eps, value=robust.mean(), correct=stats.pack(robust))
            )
    return pd.DataFrame(rows)


def test_adaptive_vs_nonadaptive_judges_the_minimal_budget_ratio_and_the_laplace_proxy() -> None:
    """Bare fooled at 1/255. fft: non-adaptive needs 8 (x8), BPDA 2 (x2), EOT 1 (x1: closed); the
    Laplace proxy needs 4 (x4: it never succeeds within x2). Robust accuracy is compared at the
    smallest budget (the bare model keeps < 0.2 everywhere): 0 against 0."""
    module = studies.module("adaptive_vs_nonadaptive")
    table = adaptive_table(
        {
            ("identity", "nonadaptive"): 1,
            ("fft", "nonadaptive"): 8,
            ("fft", "bpda"): 2,
            ("fft", "eot"): 1,
            ("fft", "bpda+eot"): 2,
            ("fft", "laplace-transfer"): 4,
        }
    )
    assert module.budgets(table, "fft", "nonadaptive") == pytest.approx(np.full(200, 8 / 255))
    finding = module.finding(table)
    assert estimates(finding) == pytest.approx([1.0, 0.0, 0.0])
    assert [c.verdict.value for c in finding.claims] == ["HOLDS", "HOLDS", "DOES NOT HOLD"]
    assert "nonadaptive x8, bpda x2, eot x1" in "\n".join(finding.notes)
    # never fooled on the grid: counted at twice the largest budget (x16 here), a lower bound
    never = adaptive_table({("identity", "nonadaptive"): 1, ("fft", "eot"): np.inf})
    assert module.ratios(never, "fft", "eot") == pytest.approx(np.full(200, 16.0))


def test_adaptive_vs_nonadaptive_compares_robust_accuracy_where_the_bare_model_keeps_a_fifth() -> None:
    """Bare: half the examples fooled from 2/255, half from 8/255 (keeps 0.5 at 2 and 4/255): the accuracy
    claim is judged at 4/255, where the defended vote under its worst adaptive attacker (EOT, fooled from
    8/255) keeps 1.0: bare - defended = -0.5, the window stays open."""
    module = studies.module("adaptive_vs_nonadaptive")
    half = np.where(np.arange(200) < 100, 2.0, 8.0)
    attackers = {a: 8.0 for a in ("nonadaptive", "bpda", "eot", "bpda+eot", "laplace-transfer")}
    table = adaptive_table({("identity", "nonadaptive"): half, **{("fft", a): v for a, v in attackers.items()}})
    finding = module.finding(table)
    accuracy = finding.claims[1]
    assert "fft at 4/255 (bare keeps 0.500)" in accuracy.label
    assert accuracy.estimate == pytest.approx(-0.5) and accuracy.verdict.value == "DOES NOT HOLD"
    assert finding.claims[0].estimate == pytest.approx(2.5)  # median of x4 and x1 ratios: (1 + 4) / 2


def test_decision_based_puts_the_first_papers_shares_beside_its_own_and_controls_in_notes() -> None:
    rows = [
        dict(
            attack=a,
            member="85%",
            reference=ref,
            pairs=100,
            ties=0.0,
            larger=60,
            decided=100,
            median=1.0,
            median_reference=1.0,
        )
        for ref in ("0%", "0% (1 ep.)")
        for a in ("additive-uniform", "salt-and-pepper", "boundary")
    ]
    finding = studies.module("decision_based").finding(pd.DataFrame(rows), [("85%", "0% (1 ep.)")])
    claims = finding.claims
    assert len(claims) == 3 and all(" vs 0%," in c.label for c in claims)
    assert [c.paper.rsplit("; ", 1)[-1] for c in claims[:2]] == [
        "first paper 4.4: 70% of cases",
        "first paper 4.4: 99% of cases",
    ]
    assert "first paper" not in claims[2].paper
    assert sum(n.startswith("control, plain model stopped early") for n in finding.notes) == 3
