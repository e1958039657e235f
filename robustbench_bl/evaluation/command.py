"""`rbl benchmark`: the fixed protocol on a zoo model or your own, one JSON result file.

    rbl benchmark --model fastnet-0 --channel gauss:0.03 --votes 8 --n 500
    rbl benchmark --model mypackage.nets:make_net --weights net.safetensors --channel cd:3

Your model: `package.module:factory`, a callable returning an nn.Module that takes [0, 1] images
(normalization inside), with optional --weights (safetensors or a torch state dict, loaded with
weights_only=True). The result goes to --out (a folder gets MODEL.benchmark.json); `rbl report` on
that folder ranks every result file it finds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from robustbench_bl import channels, data, zoo
from robustbench_bl.attacks.command import channel_spec
from robustbench_bl.cli import (
    ArgumentParser,
    command_line,
    device,
    non_negative_int,
    positive_int,
    sample_test_images,
    writable_folder,
)
from robustbench_bl.evaluation.benchmark import NORMS, PROTOCOLS, BenchmarkResult, benchmark
from robustbench_bl.models.external import from_factory, load_weights
from robustbench_bl.precision import PRECISIONS


def budget(text: str) -> float:
    """argparse type: a budget > 0 as a decimal or a fraction ('8/255')."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"must be a number such as 8/255 or 0.5, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def model_spec(text: str) -> str:
    """argparse type: a zoo model's name or 'package.module:factory'."""
    if text in zoo.names() or (":" in text and all(text.partition(":")[::2])):
        return text
    raise argparse.ArgumentTypeError(
        f"must be a zoo model ({', '.join(zoo.names())}) or 'package.module:factory', got {text!r}"
    )


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Every option checked before anything is loaded."""
    parser = ArgumentParser(prog="rbl benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=model_spec, required=True, help="a zoo model or package.module:factory")
    parser.add_argument("--weights", default=None, help="weights of a factory model: .safetensors or a state dict")
    parser.add_argument("--name", default=None, help="the model's name in the result (default: --model)")
    parser.add_argument(
        "--channel", type=channel_spec, default="identity", help=f"one of {channels.names()}, e.g. cd:3"
    )
    parser.add_argument("--votes", type=positive_int, default=1, help="majority vote over this many channel draws")
    parser.add_argument("--norm", choices=NORMS, default="Linf")
    parser.add_argument("--eps", type=budget, default=8 / 255, help="the budget in --norm, e.g. 8/255 (default)")
    parser.add_argument("--n", type=positive_int, default=1000, help="class-balanced test images")
    parser.add_argument("--repeats", type=positive_int, default=5, help="evaluations of a random defense")
    parser.add_argument("--eot-samples", type=positive_int, default=None, help="draws per EOT step (16; rand: 20)")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="standard", help="the standard suite, or AutoAttack's rand version"
    )
    parser.add_argument(
        "--no-cascade",
        dest="cascade",
        action="store_false",
        help="run every attack on every image (each attack's own robust accuracy); default: AutoAttack's cascade",
    )
    parser.add_argument(
        "--check-images",
        type=positive_int,
        default=None,
        help="the sanity checks on the first this many (default: all)",
    )
    parser.add_argument("--dataset", choices=data.IMAGE_DATASETS, default="cifar10")
    parser.add_argument("--data", default=None, help="data folder (torchvision layout or npz); default as for studies")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the sample, the attacks and draws")
    parser.add_argument("--device", type=device, default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="the gradient attacker's arithmetic")
    parser.add_argument("--out", default="results/benchmark", help="result file or folder (default results/benchmark/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.weights is not None and args.model in zoo.names():
        parser.error(f"--weights is for a factory model; the zoo model {args.model} brings its own")
    try:
        data.check_source(args.dataset, args.data, "--data")
        out = Path(args.out)
        writable_folder(out if out.suffix != ".json" else out.parent, "--out")
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> BenchmarkResult:
    args = arguments(argv)
    if args.model in zoo.names():
        model = zoo.load(args.model)
    else:
        model = from_factory(args.model)
        if args.weights is not None:
            model = load_weights(model, args.weights)
    test = sample_test_images(args.dataset, args.data, args.n, args.seed)
    result = benchmark(
        model.to(args.device).eval(),
        args.channel,
        args.votes,
        args.dataset,
        args.norm,
        args.eps,
        args.n,
        args.repeats,
        args.seed,
        data=test,
        eot_samples=args.eot_samples,
        progress=not args.quiet,
        precision=args.precision,
        name=args.name or args.model,
        protocol=args.protocol,
        cascade=args.cascade,
        check_images=args.check_images,
    )
    r = result.row
    print(
        f"{r['model']} behind {r['channel']} (votes {r['votes']}), {r['norm']} eps {r['eps']:.4g}, threat {r['threat']}: "
        f"clean {r['clean_accuracy']:.3f} [{r['clean_ci_low']:.3f}, {r['clean_ci_high']:.3f}], robust "
        f"{r['robust_accuracy']:.3f} [{r['robust_ci_low']:.3f}, {r['robust_ci_high']:.3f}] on {r['n']} images"
    )
    out = Path(args.out)
    if out.suffix != ".json":
        out.mkdir(parents=True, exist_ok=True)
    print(f"wrote {result.save(out)}")
    return result


if __name__ == "__main__":
    sys.exit(command_line(main))
