"""Benchmark: what folding the batch norms does to accuracy under bfloat16, with everything else fixed.

Folding is exact in float32; under bfloat16 autocast it is not (the features' cosine to float32's drops a little:
features.md). One im2gps2k demo run (bundle, heads, fused model and collection unchanged) is evaluated on its
held-out photos twice: as built (folded, in the CPU's default precision), and with the queries' features computed
by the unfolded backbone (`locator.backbone.prepare` patched not to fold).

    python benchmarks/folding_eval.py --run runs/im2gps2k

Writes benchmarks/results/folding_eval.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import locator.backbone
from locator.api import Locator
from locator.backbone import compute_dtype, default_device
from locator.datasets import read_dataset
from locator.evaluation import evaluate
from locator.metrics import markdown_table

RESULTS = Path(__file__).parent / "results"


def table(run: Path) -> str:
    records = read_dataset(run / "split" / "val.csv")
    with Locator.load(run / "bundle", store=f"edge:{run / 'store'}", raw_features=run / "features" / "train") as loc:
        return markdown_table(evaluate(loc, records, progress=False).rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/im2gps2k"), help="an im2gps2k demo run folder")
    args = parser.parse_args()
    precision = str(compute_dtype(default_device())).removeprefix("torch.")
    folded = table(args.run)
    original = locator.backbone.prepare
    locator.backbone.prepare = lambda backbone, device, fold=True: original(backbone, device, fold=False)
    try:
        unfolded = table(args.run)
    finally:
        locator.backbone.prepare = original
    text = (f"# Folded batch norms under {precision}: the same run, queried folded (as built) and unfolded\n\n"
            f"Run `{args.run}`; {precision} inference on {default_device()}. Only the queries' features differ. "
            f"Accuracy in % (strict <).\n\n## folded (as built)\n\n{folded}\n## unfolded\n\n{unfolded}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "folding_eval.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
