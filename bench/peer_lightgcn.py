"""PyTorch peer of the Rust LightGCN: the official gusye1234/LightGCN-PyTorch model, loss,
sampler and optimiser, on the split our code writes (`cargo xtask train lightgcn --write-split`).

Prints per-epoch training time (sampling + steps, as the official `BPR_train_original` spends it)
and test Recall@20 / NDCG@20 with train+valid masked, the same protocol as the Rust evaluation.
Usage: peer_lightgcn.py SPLIT_DIR EPOCHS THREADS [SEED]
"""

import json
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


def read_rows(path):
    with open(path) as f:
        return [[int(x) for x in line.split()] for line in f if line.strip()]


def main():
    split, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 2020
    torch.set_num_threads(threads)
    np.random.seed(seed)
    torch.manual_seed(seed)
    d, n_layers, lr, decay, batch = 64, 3, 1e-3, 1e-4, 2048

    train = read_rows(f"{split}/train.txt")
    valid = {u: i for u, i in read_rows(f"{split}/valid.txt")}
    test = {u: i for u, i in read_rows(f"{split}/test.txt")}
    n_users = len(train)
    n_items = int(open(f"{split}/n_items.txt").read())
    all_pos = [np.array(r[1:], dtype=np.int64) for r in train]
    tu = np.concatenate([np.full(len(p), u) for u, p in enumerate(all_pos)])
    ti = np.concatenate(all_pos)
    n_train = len(tu)

    # dataloader.getSparseGraph: A = [[0, R], [R^T, 0]], D^-1/2 A D^-1/2, no self-loops.
    r = sp.csr_matrix((np.ones(n_train), (tu, ti)), shape=(n_users, n_items))
    adj = sp.dok_matrix((n_users + n_items, n_users + n_items), dtype=np.float32).tolil()
    r_lil = r.tolil()
    adj[:n_users, n_users:] = r_lil
    adj[n_users:, :n_users] = r_lil.T
    adj = adj.todok()
    rowsum = np.array(adj.sum(axis=1))
    d_inv = np.power(rowsum, -0.5).flatten()
    d_inv[np.isinf(d_inv)] = 0.0
    d_mat = sp.diags(d_inv)
    norm = d_mat.dot(adj).dot(d_mat).tocsr().tocoo().astype(np.float32)
    index = torch.stack([torch.LongTensor(norm.row), torch.LongTensor(norm.col)])
    graph = torch.sparse_coo_tensor(index, torch.FloatTensor(norm.data), norm.shape).coalesce()

    emb_user = nn.Embedding(n_users, d)
    emb_item = nn.Embedding(n_items, d)
    nn.init.normal_(emb_user.weight, std=0.1)
    nn.init.normal_(emb_item.weight, std=0.1)
    opt = torch.optim.Adam([emb_user.weight, emb_item.weight], lr=lr)

    def computer():
        all_emb = torch.cat([emb_user.weight, emb_item.weight])
        embs = [all_emb]
        for _ in range(n_layers):
            all_emb = torch.sparse.mm(graph, all_emb)
            embs.append(all_emb)
        out = torch.mean(torch.stack(embs, dim=1), dim=1)
        return torch.split(out, [n_users, n_items])

    def sample():
        # utils.UniformSample_original_python
        users = np.random.randint(0, n_users, n_train)
        s = []
        for user in users:
            pos = all_pos[user]
            if len(pos) == 0:
                continue
            positem = pos[np.random.randint(0, len(pos))]
            while True:
                negitem = np.random.randint(0, n_items)
                if negitem in pos:
                    continue
                break
            s.append([user, positem, negitem])
        return np.array(s)

    pos_sets = [set(p.tolist()) for p in all_pos]
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        s = sample()
        t_sample = time.time() - t0
        users = torch.Tensor(s[:, 0]).long()
        pos = torch.Tensor(s[:, 1]).long()
        neg = torch.Tensor(s[:, 2]).long()
        perm = np.random.permutation(len(users))
        users, pos, neg = users[perm], pos[perm], neg[perm]
        aver = 0.0
        n_batch = 0
        for b0 in range(0, len(users), batch):
            bu, bp, bn = users[b0:b0 + batch], pos[b0:b0 + batch], neg[b0:b0 + batch]
            all_u, all_i = computer()
            ue, pe, ne = all_u[bu], all_i[bp], all_i[bn]
            u0, p0, n0 = emb_user(bu), emb_item(bp), emb_item(bn)
            reg = 0.5 * (u0.norm(2).pow(2) + p0.norm(2).pow(2) + n0.norm(2).pow(2)) / float(len(bu))
            ps = torch.sum(ue * pe, dim=1)
            ns = torch.sum(ue * ne, dim=1)
            loss = torch.mean(torch.nn.functional.softplus(ns - ps)) + reg * decay
            opt.zero_grad()
            loss.backward()
            opt.step()
            aver += loss.item()
            n_batch += 1
        dt = time.time() - t0
        print(json.dumps({"epoch": epoch, "loss": aver / n_batch, "seconds": dt,
                          "sampling_seconds": t_sample}), flush=True)

    with torch.no_grad():
        all_u, all_i = computer()
        scores = all_u @ all_i.T
        for u in range(n_users):
            masked = list(pos_sets[u]) + [valid[u]]
            scores[u, masked] = -float("inf")
        target = torch.tensor([test[u] for u in range(n_users)])
        st = scores[torch.arange(n_users), target]
        # Rank with the Rust tie rule: ties go to the lower item id.
        ids = torch.arange(n_items).unsqueeze(0)
        above = (scores > st[:, None]) | ((scores == st[:, None]) & (ids < target[:, None]))
        rank = above.sum(dim=1).double()
        hit = (rank < 20).double()
        ndcg = hit / torch.log2(rank + 2)
        print(json.dumps({"final": True, "recall@20": hit.mean().item(),
                          "ndcg@20": ndcg.mean().item(),
                          "hits@10": int((rank < 10).sum().item())}), flush=True)


if __name__ == "__main__":
    main()
