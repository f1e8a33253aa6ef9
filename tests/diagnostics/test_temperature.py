import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pyg_cf.diagnostics import find_user_tau, temperature_vs_degree, user_temperatures
from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.losses import get_loss


def test_sources(tiny_data):
    tau = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert find_user_tau(tau) is tau
    loss = get_loss("ssm")
    loss.user_tau_table = tau  # what adaptive schedules set
    assert find_user_tau(loss) is tau
    schedule = SimpleNamespace(user_tau=tau)
    assert find_user_tau(schedule) is tau
    trainer = SimpleNamespace(loss=get_loss("ssm"), callbacks=[object(), schedule])
    assert find_user_tau(trainer) is tau
    with pytest.raises(PygCFError, match="no per-user temperature"):
        find_user_tau(get_loss("ssm"))


def test_user_temperatures_hand_checked(tiny_data):
    # user degrees 2, 3, 1, 2; user 3 never got a temperature (NaN)
    df = user_temperatures(torch.tensor([0.2, 0.3, 0.1, float("nan")]), tiny_data)
    assert df["user"].tolist() == [0, 1, 2]
    assert df["degree"].tolist() == [2, 3, 1]
    assert df["tau"].tolist() == pytest.approx([0.2, 0.3, 0.1])
    with pytest.raises(ConfigError, match="4 users"):
        user_temperatures(torch.ones(3), tiny_data)


def test_temperature_vs_degree_monotone(tiny_data):
    view = temperature_vs_degree(torch.tensor([0.2, 0.3, 0.1, 0.2]), tiny_data)  # tau = deg/10
    assert view.spearman == pytest.approx(1.0)
    assert view.slope is not None and view.slope.slope == pytest.approx(1.0)
    assert view.bins["count"].sum() == 4
    flat = temperature_vs_degree(torch.full((4,), 0.1), tiny_data)
    assert math.isnan(flat.spearman)
    assert flat.slope is not None and flat.slope.slope == pytest.approx(0.0, abs=1e-12)


def test_with_adaptau_trainer(tiny_data):
    from pyg_cf.losses.temperature import AdapTau
    from pyg_cf.nn import GraphCF
    from pyg_cf.train import TrainConfig, Trainer

    schedule = AdapTau()
    loss = get_loss("ssm", include_positive=False)
    model = GraphCF.from_data(tiny_data, "mf", embedding_dim=4)
    cfg = TrainConfig(
        epochs=2, batch_size=4, eval_every=0, ks=(2,), monitor="ndcg@2", progress=False
    )
    trainer = Trainer(model, tiny_data, loss, cfg, callbacks=[schedule])
    trainer.fit()
    view = temperature_vs_degree(trainer, tiny_data)
    assert len(view.per_user) == 4
    assert np.isfinite(view.per_user["tau"]).all()
    assert torch.equal(find_user_tau(trainer), schedule.user_tau)


def test_spearman_is_a_rank_correlation(tiny_data):
    # user degrees 2, 3, 1, 2; tau = exp(4 * degree): monotone but far from linear, so
    # Spearman's rho is exactly 1 while Pearson's r is about 0.83
    tau = torch.exp(4.0 * torch.tensor([2.0, 3.0, 1.0, 2.0]))
    view = temperature_vs_degree(tau, tiny_data)
    assert view.spearman == pytest.approx(1.0, abs=1e-12)
    falling = temperature_vs_degree(1.0 / tau, tiny_data)
    assert falling.spearman == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(2, 2), (4, 1), (1, 4)])
def test_temperatures_must_be_one_dimensional(tiny_data, shape):
    # a [2, 2] tensor for 4 users used to be flattened and read as one tau per user
    tau = torch.rand(shape)
    for fn in (user_temperatures, temperature_vs_degree):
        match = re.escape(f"1-D [num_users] tensor, got shape {shape}")
        with pytest.raises(ConfigError, match=match):
            fn(tau, tiny_data)
