"""PyTorch peer of the Rust LightGCN: the official gusye1234/LightGCN-PyTorch model, loss,
sampler and optimiser, on the split our code writes (`cargo xtask train lightgcn --write-split`).

Prints per-epoch training time (sampling + steps, as the official `BPR_train_original` spends it;
evaluation excluded) and test Recall@20 / NDCG@20 with train+valid masked, the same protocol as
the Rust evaluation. The final line also gives the evaluation time and the process's peak RSS.

Runs at the paper's size (AMZ: ~94K users x 39K items, 1.08M interactions): the normalised
adjacency is built straight from the interaction arrays as a sparse matrix (the official
`getSparseGraph` goes through scipy dok/lil slice assignment, which densifies R: 27.7 GiB at AMZ),
with the same values as the official construction (`adjacency` below; `peer_lightgcn_check.py`
checks equality against the official code), and the evaluation scores users in blocks of at most
EVAL_BLOCK_ELEMS user-item scores instead of one dense users x items matrix.

Usage: peer_lightgcn.py SPLIT_DIR EPOCHS THREADS [SEED]
"""

import json
import resource
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


# Scores held at once during evaluation (users per block = this // n_items): 64 MiB of float32.
EVAL_BLOCK_ELEMS = 1 << 24


def read_rows(path):
    with open(path) as f:
        return [[int(x) for x in line.split()] for line in f if line.strip()]


def read_split(split):
    """The split `xtask train lightgcn --write-split` wrote: training rows, valid and test items
    per user, the user and item counts, each user's training items, and the training pairs as
    (user, item) arrays."""
    train = read_rows(f"{split}/train.txt")
    valid = {u: i for u, i in read_rows(f"{split}/valid.txt")}
    test = {u: i for u, i in read_rows(f"{split}/test.txt")}
    n_users = len(train)
    n_items = int(open(f"{split}/n_items.txt").read())
    all_pos = [np.array(r[1:], dtype=np.int64) for r in train]
    tu = np.concatenate([np.full(len(p), u) for u, p in enumerate(all_pos)])
    ti = np.concatenate(all_pos)
    return train, valid, test, n_users, n_items, all_pos, tu, ti


def adjacency(tu, ti, n_users, n_items):
    """dataloader.getSparseGraph without its dense intermediate: A = [[0, R], [R^T, 0]] with
    R = csr_matrix((ones, (trainUser, trainItem))) (duplicates summed, as the official
    UserItemNet), no self-loops, then D^-1/2 A D^-1/2 in float32 with D the row sums and
    zero-degree rows given d^-1/2 = 0 (the official `d_inv[np.isinf(d_inv)] = 0.`).

    The official code computes rowsum and d_inv in float32 and the product as two float32 sparse
    products, so each value is float32(float32(d_r * a) * d_c); this does the same multiplications
    in the same order. Returns (row, col, value) numpy arrays (unsorted; `coalesce` sorts).
    """
    r = sp.csr_matrix((np.ones(len(tu), dtype=np.float32), (tu, ti)), shape=(n_users, n_items))
    r.sum_duplicates()
    r = r.tocoo()
    n = n_users + n_items
    row = np.concatenate([r.row.astype(np.int64), r.col.astype(np.int64) + n_users])
    col = np.concatenate([r.col.astype(np.int64) + n_users, r.row.astype(np.int64)])
    a = np.concatenate([r.data, r.data]).astype(np.float32)
    # Integer-valued sums, exact in float64 and float32 alike (below 2^24 per row).
    rowsum = np.bincount(row, weights=a, minlength=n).astype(np.float32)
    with np.errstate(divide="ignore"):
        d_inv = np.power(rowsum, np.float32(-0.5))
    d_inv[np.isinf(d_inv)] = 0.0
    val = (d_inv[row] * a) * d_inv[col]
    # scipy's sparse product drops entries that come out as exact zeros.
    keep = val != 0
    return row[keep], col[keep], val[keep]


def main():
    split, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 2020
    torch.set_num_threads(threads)
    np.random.seed(seed)
    torch.manual_seed(seed)
    d, n_layers, lr, decay, batch = 64, 3, 1e-3, 1e-4, 2048

    _, valid, test, n_users, n_items, all_pos, tu, ti = read_split(split)
    n_train = len(tu)

    # dataloader.getSparseGraph + _convert_sp_mat_to_sp_tensor (see `adjacency`).
    row, col, val = adjacency(tu, ti, n_users, n_items)
    index = torch.stack([torch.from_numpy(row), torch.from_numpy(col)])
    n_nodes = n_users + n_items
    graph = torch.sparse_coo_tensor(index, torch.from_numpy(val), (n_nodes, n_nodes)).coalesce()
    del row, col, val, index

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

    t0 = time.time()
    with torch.no_grad():
        all_u, all_i = computer()
        rank = block_ranks(all_u, all_i, tu, ti, valid, test)
    hit = (rank < 20).double()
    ndcg = hit / torch.log2(rank + 2)
    print(json.dumps({"final": True, "recall@20": hit.mean().item(),
                      "ndcg@20": ndcg.mean().item(),
                      "hits@10": int((rank < 10).sum().item()),
                      "eval_seconds": time.time() - t0,
                      "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
          flush=True)


def block_ranks(all_u, all_i, tu, ti, valid, test, block_elems=EVAL_BLOCK_ELEMS):
    """0-based rank of every user's test item among all items, train and valid items masked,
    ties to the lower item id (the Rust rule), computed in blocks of users. `tu`/`ti` are the
    training pairs sorted by user (as train.txt lists them)."""
    n_users, n_items = all_u.shape[0], all_i.shape[0]
    indptr = np.searchsorted(tu, np.arange(n_users + 1))
    valid_t = torch.tensor([valid[u] for u in range(n_users)])
    test_t = torch.tensor([test[u] for u in range(n_users)])
    ids = torch.arange(n_items).unsqueeze(0)
    step = max(1, block_elems // max(n_items, 1))
    ranks = []
    for b0 in range(0, n_users, step):
        b1 = min(n_users, b0 + step)
        scores = all_u[b0:b1] @ all_i.T
        lo, hi = indptr[b0], indptr[b1]
        scores[torch.from_numpy(tu[lo:hi] - b0), torch.from_numpy(ti[lo:hi])] = -float("inf")
        rows = torch.arange(b1 - b0)
        scores[rows, valid_t[b0:b1]] = -float("inf")
        target = test_t[b0:b1]
        st = scores[rows, target]
        above = (scores > st[:, None]) | ((scores == st[:, None]) & (ids < target[:, None]))
        ranks.append(above.sum(dim=1))
    return torch.cat(ranks).double()

if __name__ == "__main__":
    main()
