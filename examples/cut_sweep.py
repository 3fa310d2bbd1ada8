"""Cut depth x defense on Fashion-MNIST through the Python API (about 8 minutes on 2 cores).

    .venv/bin/python examples/cut_sweep.py [--epochs 2] [--alpha 5]

Prints one line per (cut, defense): accuracy, dCor (V and U), decoder SSIM and PSNR on the
first 1,000 test images. The README's cut table came from this script.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from splitleak import DataConfig, EvalConfig, TrainConfig, evaluate, load_checkpoint, load_splits, save_checkpoint, train
from splitleak.models import get_architecture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=5.0)
    args = parser.parse_args()
    splits = load_splits(DataConfig(dataset="fashion-mnist", limit_test=1000))
    with tempfile.TemporaryDirectory() as tmp:
        for cut in get_architecture("small-cnn").cuts:
            for defense, params in (("none", {}), ("nopeek", {"alpha": args.alpha})):
                trained = train(TrainConfig(cut=cut, epochs=args.epochs, defense=defense, defense_params=params), splits)
                path = save_checkpoint(Path(tmp) / f"{cut}-{defense}.safetensors", trained.model, trained.meta)
                mean = evaluate(load_checkpoint(path), EvalConfig(limit=1000), splits).summary().set_index(["attack", "metric"])["mean"]
                print(
                    f"cut {cut} {defense:7s} accuracy {mean[('', 'accuracy')]:.3f}  dcor {mean[('', 'dcor')]:.3f}  "
                    f"dcor_u2 {mean[('', 'dcor_u2')]:.3f}  ssim {mean[('decoder', 'ssim')]:.3f}  psnr {mean[('decoder', 'psnr')]:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
