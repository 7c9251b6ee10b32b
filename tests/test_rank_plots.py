"""report.png and histogram.png past a few dozen classes: one rank plot of a fixed size (issue 27)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.outputs.rank_plot import RANK_FIGSIZE, RANK_PLOT_ABOVE, cluster_spread
from pipelines.outputs.report import histogram_figure, report_figure
from transforms.plots import png_bytes


def synthetic_classes(n: int, seed: int = 0) -> list[dict]:
    """n classes in label order with long-tailed (Zipf-like) sizes, shuffled against the labels; two
    clusters each, 4:1 (the second empty below five records); one target T, quotas split over the live ones."""
    rng = np.random.default_rng(seed)
    train = rng.permutation(np.maximum(1, (50_000 / np.arange(1, n + 1) ** 0.8).astype(int)))
    target = int(np.median(train))
    small = train // 5
    big = train - small
    q_big = np.where(small > 0, (target + 1) // 2, target)
    return [{"label": f"class {i:06d}", "input": t + t // 10, "holdout": t // 10, "val": t // 10, "test": 0,
             "train_input": t, "target": target, "output": target,
             "clusters": [{"id": 0, "input": b, "quota": qb, "output": qb},
                          {"id": 1, "input": s, "quota": target - qb, "output": target - qb}]}
            for i, (t, b, s, qb) in enumerate(zip(train.tolist(), big.tolist(), small.tolist(), q_big.tolist(),
                                                  strict=True))]


def manifest(classes: list[dict]) -> dict:
    return {"classes": classes, "options": {"strategy": "cluster"}, "seed": 7}


def histogram_doc(classes: list[dict]) -> dict:
    """histogram.json's shape (its figure reads no "output" keys, so they may stay)."""
    inputs = [c["input"] for c in classes]
    return {"classes": classes, "input": {"path": "/data/*.parquet"}, "seed": 7,
            "imbalance_ratio": max(inputs) / min(inputs), "plan": {"strategy": "cluster"}}


def decoded(fig) -> Image.Image:
    img = Image.open(io.BytesIO(png_bytes(fig)))
    img.load()
    assert img.format == "PNG"
    return img


@pytest.fixture(scope="module")
def by_count():
    """Classes for each count the tests draw, built once (100,000 take ~0.4 s)."""
    return {n: synthetic_classes(n) for n in (5, RANK_PLOT_ABOVE, RANK_PLOT_ABOVE + 1, 3_000, 100_000)}


@pytest.mark.parametrize("figure,doc,counts", [(report_figure, manifest, (5, RANK_PLOT_ABOVE)),
                                               (histogram_figure, histogram_doc, (5,))])
def test_up_to_the_threshold_one_bar_per_class(figure, doc, counts, by_count):
    for n in counts:
        a = figure(doc(by_count[n])).axes[0]
        assert len(a.patches) == 2 * n  # before and after (report), train input and held out (histogram)
        assert [t.get_text() for t in a.get_xticklabels()] == [f"class {i:06d}" for i in range(n)]
        assert a.get_xscale() == "linear" and a.get_yscale() == "log"
    assert decoded(figure(doc(by_count[5]))).size[0] < RANK_FIGSIZE[0] * 90


@pytest.mark.parametrize("figure,doc,counts", [(report_figure, manifest, (3_000, 100_000)),
                                               (histogram_figure, histogram_doc, (RANK_PLOT_ABOVE + 1, 3_000))])
def test_past_the_threshold_a_rank_plot_of_one_size(figure, doc, counts, by_count):
    sizes = set()
    for n in counts:
        fig = figure(doc(by_count[n]))
        (ax,) = fig.axes
        assert ax.get_yscale() == "log"
        assert ax.get_xscale() == ("log" if n > 1000 else "linear")
        before, after = ax.get_lines()
        x, y = before.get_data()
        np.testing.assert_array_equal(x, np.arange(1, n + 1))
        train = np.array([c["train_input"] for c in by_count[n]])
        np.testing.assert_array_equal(y, np.sort(train)[::-1])  # sorted by size, largest first
        assert (after.get_ydata() == by_count[n][0]["target"]).all()
        assert len(ax.collections) == (2 if figure is report_figure else 1)  # a band per series, not per class
        assert ax.get_legend() is not None and ax.get_xlabel() and ax.get_ylabel()
        assert f"{n:,} classes" in ax.get_title()
        sizes.add(decoded(fig).size)
        assert not any("class" in t.get_text() for t in ax.get_xticklabels())  # numbers, no names
    assert sizes == {(RANK_FIGSIZE[0] * 90, RANK_FIGSIZE[1] * 90)}


def test_cluster_spread_is_min_and_max_of_live_clusters():
    classes = [{"clusters": [{"input": 5}, {"input": 0}, {"input": 2}]}, {"clusters": [{"input": 0}]},
               {"clusters": []}, {}, {"clusters": [{"input": 9}]}]
    lo, hi = cluster_spread(classes, "input")
    np.testing.assert_array_equal(lo, [2, np.nan, np.nan, np.nan, 9])
    np.testing.assert_array_equal(hi, [5, np.nan, np.nan, np.nan, 9])
