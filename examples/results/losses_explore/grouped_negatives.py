"""Go/no-go: MF + SSM (cos, tau 0.1, negatives only in the denominator), M uniform negatives
shared within G groups of rows (G=1: one shared set; G=B: per row). Test Recall@20 per epoch.

A standalone loop (own sampling and loss, the package only for data and evaluation), written
to test the idea before it became ``shared_negatives=G``:

    OMP_NUM_THREADS=1 python examples/results/losses_explore/grouped_negatives.py G M EPOCHS [LR]
"""

import json
import sys
import time

import torch
import torch.nn.functional as F

from pyg_cf import datasets
from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer, seed_everything

torch.set_num_threads(1)
G, M, epochs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-3
tau = 0.1
data = datasets.load("gowalla", val_ratio=0.0)
seed_everything(0)
model = GraphCF.from_data(data, "mf", embedding_dim=64)
tr = Trainer(
    model,
    data,
    get_loss("ssm", tau=tau, similarity="cos"),
    TrainConfig(test_similarity="cos", progress=False),
)
ei = tr.train_ei
E = ei.size(1)
opt = torch.optim.Adam(model.parameters(), lr=lr)
gen = torch.Generator().manual_seed(0)
out = []
t0 = time.perf_counter()
for ep in range(1, epochs + 1):
    model.train()
    perm = torch.randperm(E, generator=gen)
    tot = 0.0
    for s in range(0, E, 2048):
        idx = perm[s : s + 2048]
        B = idx.numel()
        u_all, i_all = model()
        u = F.normalize(u_all[ei[0, idx]], dim=-1)
        p = F.normalize(i_all[ei[1, idx]], dim=-1)
        g = min(G, B)
        S = -(-B // g)
        neg_idx = torch.randint(i_all.size(0), (g, M), generator=gen)
        n = F.normalize(i_all.index_select(0, neg_idx.reshape(-1)).view(g, M, -1), dim=-1)
        up = F.pad(u, (0, 0, 0, g * S - B)).view(g, S, -1)
        neg = torch.bmm(up, n.transpose(1, 2)).reshape(g * S, M)[:B]
        loss = (-(u * p).sum(-1) / tau + torch.logsumexp(neg / tau, -1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot += float(loss.detach()) * B
    r = tr.evaluate("test")
    out.append(
        {
            "epoch": ep,
            "loss": tot / E,
            "recall@20": r["recall@20"],
            "ndcg@20": r["ndcg@20"],
            "elapsed_s": time.perf_counter() - t0,
        }
    )
    print(json.dumps(out[-1]), flush=True)
json.dump(out, open(f"group_G{G}_M{M}_lr{lr}.json", "w"), indent=1)
