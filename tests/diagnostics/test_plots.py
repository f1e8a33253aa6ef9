import numpy as np
import pytest
import torch

from pyg_cf.data.synthetic import power_law_bipartite
from pyg_cf.diagnostics import (
    long_tail_recall,
    magnitude_vs_degree,
    monte_carlo_check,
    plots,
    similarity_histograms,
    temperature_vs_degree,
)
from pyg_cf.diagnostics.theory import fit_theory
from pyg_cf.errors import ConfigError
from pyg_cf.nn import GraphCF

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def data():
    return power_law_bipartite(300, 200, min_user_degree=3, test_ratio=0.2, seed=5)


@pytest.fixture(scope="module")
def models(data):
    torch.manual_seed(0)
    return {
        "MF": GraphCF.from_data(data, "mf", embedding_dim=8),
        "SVD++ item": GraphCF.from_data(data, "svdpp-item", embedding_dim=8),
    }


def _png(path):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_magnitude_plot(tmp_path, data, models):
    frames = {k: magnitude_vs_degree(m, data) for k, m in models.items()}
    path = tmp_path / "sub" / "magnitude.png"
    fig = plots.plot_magnitude_vs_degree(frames, node_type="item", path=path)
    _png(path)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    # MF does not propagate items: no theory curve; item-side SVD++ gets one
    assert sum("theory fit" in lb for lb in labels) == 1
    assert any(lb.startswith("MF (slope") for lb in labels)
    fig2 = plots.plot_magnitude_vs_degree(frames["MF"], node_type="user", value="sq_norm")
    assert fig2.axes[0].get_ylabel() == "squared embedding norm"
    with pytest.raises(ConfigError, match="value"):
        plots.plot_magnitude_vs_degree(frames, value="size")
    with pytest.raises(ConfigError, match="frames"):
        plots.plot_magnitude_vs_degree({})


def test_long_tail_plots(tmp_path, data, models):
    res = {k: long_tail_recall(m, data, k=10, groups=5) for k, m in models.items()}
    fig = plots.plot_long_tail(res, tmp_path / "lt.png")
    _png(tmp_path / "lt.png")
    bars = fig.axes[0].patches
    assert len(bars) == 2 * 5
    top = {round(b.get_x(), 3): b.get_y() + b.get_height() for b in bars}
    assert sorted(top.values()) == pytest.approx(sorted(r.recall for r in res.values()))
    fig = plots.plot_long_tail(res["MF"], tmp_path / "grouped.pdf", stacked=False)
    assert (tmp_path / "grouped.pdf").stat().st_size > 1000
    assert len(fig.axes[0].patches) == 5
    with pytest.raises(ConfigError, match="results"):
        plots.plot_long_tail({"a": 1.0})  # type: ignore[dict-item]


def test_similarity_temperature_theory_plots(tmp_path, data, models):
    views = {k: similarity_histograms(m, data) for k, m in models.items()}
    plots.plot_similarity(views, tmp_path / "sim.png")
    _png(tmp_path / "sim.png")
    tv = temperature_vs_degree(torch.rand(300), data)
    plots.plot_temperature_vs_degree(tv, tmp_path / "tau.png")
    _png(tmp_path / "tau.png")
    fig = plots.plot_theory_check(monte_carlo_check(data, 0.5, 0.5), tmp_path / "th.png")
    _png(tmp_path / "th.png")
    assert len(fig.axes[0].lines) == 3
    with pytest.raises(ConfigError, match="monte_carlo_check"):
        plots.plot_theory_check(tv.bins)
    with pytest.raises(ConfigError, match="temperature_vs_degree"):
        plots.plot_temperature_vs_degree(tv.bins)  # type: ignore[arg-type]


def test_training_curves_plot_one_line_per_run_from_trainer_histories(tmp_path):
    import pandas as pd

    from pyg_cf.losses import get_loss
    from pyg_cf.train import TrainConfig, Trainer
    from tests.train.test_trainer import synthetic

    data = synthetic()
    hists = {}
    for name in ("bpr", "ssm"):
        torch.manual_seed(0)
        model = GraphCF.from_data(data, "mf", embedding_dim=8)
        cfg = TrainConfig(epochs=3, eval_every=2, progress=False, batch_size=64)
        hists[name] = Trainer(model, data, get_loss(name), cfg).fit()
    path = tmp_path / "curves.png"
    fig = plots.plot_training_curves(hists, metric="val_recall@20", path=path)
    _png(path)
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["bpr", "ssm"]
    for ln, hist in zip(lines, hists.values(), strict=True):
        evaluated = hist[hist["val_recall@20"].notna()]  # epoch 1 was not evaluated
        assert list(ln.get_ydata()) == pytest.approx(list(evaluated["val_recall@20"]))
        assert list(ln.get_xdata()) == pytest.approx(list(evaluated["elapsed_s"] / 60))
    # training time: the running sum of every epoch's train_s (epoch 1's too, though it
    # was not evaluated), evaluation time left out — below the wall clock from epoch 2 on
    by_train = plots.plot_training_curves(hists["bpr"], metric="val_recall@20", x="train_s")
    hist = hists["bpr"]
    want = hist["train_s"].cumsum()[hist["val_recall@20"].notna()] / 60
    got = by_train.axes[0].get_lines()[0].get_xdata()
    assert list(got) == pytest.approx(list(want))
    assert all(g < e / 60 for g, e in zip(got, hist["elapsed_s"][hist["val_recall@20"].notna()]))
    assert by_train.axes[0].get_xlabel() == "training time (min)"
    by_epoch = plots.plot_training_curves(hists["bpr"], metric="val_recall@20", x="epoch")
    assert list(by_epoch.axes[0].get_lines()[0].get_xdata()) == [2, 3]
    with pytest.raises(ConfigError, match="x must be"):
        plots.plot_training_curves(hists, x="wall")
    with pytest.raises(ConfigError, match="no column"):
        plots.plot_training_curves(hists, metric="test_ndcg@5")
    with pytest.raises(ConfigError, match="no evaluation"):
        plots.plot_training_curves(pd.DataFrame({"elapsed_s": [1.0], "m": [float("nan")]}), "m")


@pytest.mark.parametrize("value", ["norm", "sq_norm"])
def test_magnitude_plot_theory_curve_values(data, value):
    # the dashed curve is the theory fit at the frame's alpha0 (0.5 here, not 0), its
    # square root on the norm axis
    torch.manual_seed(0)
    model = GraphCF.from_data(data, "svdpp-item", embedding_dim=8, alpha0=0.5)
    df = magnitude_vs_degree(model, data)
    assert df.attrs["alpha0"] == 0.5
    fig = plots.plot_magnitude_vs_degree(df, node_type="item", value=value)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "theory fit"]
    g = df[(df["node_type"] == "item") & (df["degree"] > 0)]
    fit = fit_theory(g["degree"], g["sq_norm"], 0.5)
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    assert x[0] == g["degree"].min() and x[-1] == pytest.approx(g["degree"].max())
    want = fit.predict(x)
    np.testing.assert_allclose(y, np.sqrt(want) if value == "norm" else want, rtol=1e-12)
    other = fit_theory(g["degree"], g["sq_norm"], 0.0).predict(x)
    assert not np.allclose(want, other, rtol=1e-3)  # alpha0 matters: the check has teeth


@pytest.mark.parametrize("norm", [1.0, 0.0])
def test_a_frame_with_nothing_to_fit_is_still_drawn(norm):
    """One distinct degree, or no positive norm: the points are drawn and the legend says
    there is no slope (it raised, though the callback records such frames)."""
    import pandas as pd

    df = pd.DataFrame(
        {"node_type": "item", "node": range(5), "degree": 3, "norm": norm, "sq_norm": norm}
    )
    df.attrs.update(propagated={"item": True}, alpha0=0.5)
    fig = plots.plot_magnitude_vs_degree(df, node_type="item", value="sq_norm")
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert labels == ["(no slope to fit)"]  # and no theory curve
    (x,) = {float(v) for v in fig.axes[0].get_lines()[0].get_xdata()}
    assert x == pytest.approx(3.0)
