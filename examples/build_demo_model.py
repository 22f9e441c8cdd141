"""Builds the demo ONNX model by hand: a scikit-learn MLP on digits or MNIST 5k."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.modelserver.demo_model import DATASETS, build_demo_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("./outrider-state/models"))
    args = parser.parse_args()
    print(build_demo_model(args.out, args.dataset, args.seed))


if __name__ == "__main__":
    main()
