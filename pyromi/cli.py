"""Command line: ``pyromi demo`` (or ``python -m pyromi demo``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyromi",
        description="Mutual-information bounds for Pyro models. All values are in nats "
        "(1 nat = 1.4427 bits).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="bounds on a built-in linear-Gaussian model with closed-form MI, beside the truth",
    )
    demo.add_argument("--num-samples", "-N", type=int, default=256, help="joint draws N (default 256)")
    demo.add_argument("--num-particles", "-K", type=int, default=1000, help="proposal draws K (default 1000)")
    demo.add_argument("--train-steps", type=int, default=1500, help="steps to fit q(z|x) (default 1500)")
    demo.add_argument("--num-steps", "-T", type=int, default=300,
                      help="annealing transitions T for the AIS row (default 300)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.num_samples, args.num_particles, args.train_steps, args.seed,
                 ais_steps=args.num_steps, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
