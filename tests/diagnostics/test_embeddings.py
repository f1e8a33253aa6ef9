import pytest
import torch
from torch import nn

from pyg_cf.diagnostics.embeddings import final_embeddings, propagation_info
from pyg_cf.errors import ConfigError
from pyg_cf.nn import GraphCF


def test_pair_and_graphcf(tiny_data):
    u, i = torch.randn(4, 3, requires_grad=True), torch.randn(5, 3)
    fu, fi = final_embeddings((u, i))
    assert not fu.requires_grad and torch.equal(fu, u.detach()) and torch.equal(fi, i)
    model = GraphCF.from_data(tiny_data, "lightgcn", embedding_dim=4)
    mu, mi = final_embeddings(model)
    eu, ei = model.embeddings()
    assert torch.equal(mu, eu) and torch.equal(mi, ei)
    assert model.training  # restored


def test_module_with_forward_only():
    class M(nn.Module):
        def forward(self):
            return torch.ones(2, 3), torch.zeros(4, 3)

    u, i = final_embeddings(M())
    assert u.shape == (2, 3) and i.shape == (4, 3)


def test_a_submodule_named_embeddings_is_not_called_as_the_method():
    # a model keeping its tables as `self.embeddings` failed inside torch
    # ("Embedding.forward() missing 1 required positional argument")
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.Embedding(6, 3)

        def forward(self):
            return self.embeddings.weight[:2], self.embeddings.weight[2:]

    u, i = final_embeddings(M())
    assert u.shape == (2, 3) and i.shape == (4, 3)


def test_bad_sources():
    with pytest.raises(ConfigError, match="pair"):
        final_embeddings(torch.ones(3, 2))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pair"):
        final_embeddings((torch.ones(3),))


def test_propagation_info(tiny_data):
    info = propagation_info(GraphCF.from_data(tiny_data, "svdpp-user", alpha0=1.0))
    assert info == {"alpha0": 1.0, "alpha1": 0.0, "propagated": {"user": True, "item": False}}
    mf = propagation_info(GraphCF.from_data(tiny_data, "mf"))
    assert mf["propagated"] == {"user": False, "item": False}
    assert propagation_info((torch.ones(1, 1), torch.ones(1, 1))) == {}
