"""Writes tabular.csv beside this file: a tabular classification task on which an MLP's configuration matters
(benchmarks/search_quality.py --tasks tabular; search_spaces/tabular_mlp.yaml). Deterministic: the same file
on every run, so it is kept in the repository and this script only says how it was made.

    python search_spaces/data/make_tabular.py [OUT]     # OUT: default tabular.csv beside this file

1200 rows, 4 classes, each class two Gaussian clusters around vertices of a hypercube in 8 informative
dimensions (scikit-learn's make_classification, class_sep 0.8: the classes overlap), 4 redundant columns
(linear mixes of the informative ones), 3 columns of pure noise, 5 % of labels flipped at random, and one
categorical column (`site`, 5 levels) that shifts two informative columns by a level-specific offset, so an
MLP must use its one-hot encoding to undo it. Values rounded to 4 decimals.
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

ROWS, SEED = 1200, 7


def main(out: Path = Path(__file__).parent / "tabular.csv") -> None:
    x, y = make_classification(n_samples=ROWS, n_features=15, n_informative=8, n_redundant=4, n_repeated=0,
                               n_classes=4, n_clusters_per_class=2, class_sep=0.8, flip_y=0.05, shuffle=False,
                               random_state=SEED)  # columns: 8 informative, 4 redundant, 3 noise
    rng = np.random.default_rng(SEED)
    order = rng.permutation(ROWS)  # rows in random order, columns kept
    x, y = x[order], y[order]
    site = rng.integers(0, 5, ROWS)
    offsets = rng.normal(0.0, 1.5, size=(5, 2))
    x[:, :2] += offsets[site]
    names = [f"f{i:02d}" for i in range(x.shape[1])]
    lines = [",".join(names + ["site", "label"])]
    for row, s, label in zip(x, site, y):
        lines.append(",".join(f"{v:.4f}" for v in row) + f",site_{'abcde'[s]},class_{label}")
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:2]))
