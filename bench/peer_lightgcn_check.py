"""One-off check of peer_lightgcn.py's at-size paths against the official construction.

1. Its sparse adjacency equals the official `getSparseGraph` (scipy dok/lil, as the peer did
   before; dense at AMZ size) after the official conversion to a coalesced torch sparse tensor:
   same indices, max abs value difference printed (expected 0).
2. Its block evaluation gives the same ranks as the former dense users x items evaluation, on
   random embeddings, with several block sizes.

Usage: peer_lightgcn_check.py SPLIT_DIR   (a split from `xtask train lightgcn --write-split`;
small datasets only, the official construction is dense)
"""

import sys

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from peer_lightgcn import adjacency, block_ranks, read_split  # noqa: E402


def official_graph(tu, ti, n_users, n_items):
    # gusye1234/LightGCN-PyTorch dataloader.getSparseGraph + _convert_sp_mat_to_sp_tensor.
    user_item = sp.csr_matrix((np.ones(len(tu)), (tu, ti)), shape=(n_users, n_items))
    adj = sp.dok_matrix((n_users + n_items, n_users + n_items), dtype=np.float32).tolil()
    r = user_item.tolil()
    adj[:n_users, n_users:] = r
    adj[n_users:, :n_users] = r.T
    adj = adj.todok()
    rowsum = np.array(adj.sum(axis=1))
    d_inv = np.power(rowsum, -0.5).flatten()
    d_inv[np.isinf(d_inv)] = 0.0
    d_mat = sp.diags(d_inv)
    norm = d_mat.dot(adj).dot(d_mat).tocsr()
    coo = norm.tocoo().astype(np.float32)
    index = torch.stack([torch.Tensor(coo.row).long(), torch.Tensor(coo.col).long()])
    return torch.sparse_coo_tensor(index, torch.FloatTensor(coo.data), coo.shape).coalesce()


def dense_ranks(all_u, all_i, all_pos, valid, test):
    # The peer's former evaluation: one dense users x items score matrix.
    n_users, n_items = all_u.shape[0], all_i.shape[0]
    scores = all_u @ all_i.T
    for u in range(n_users):
        masked = list(set(all_pos[u].tolist())) + [valid[u]]
        scores[u, masked] = -float("inf")
    target = torch.tensor([test[u] for u in range(n_users)])
    st = scores[torch.arange(n_users), target]
    ids = torch.arange(n_items).unsqueeze(0)
    above = (scores > st[:, None]) | ((scores == st[:, None]) & (ids < target[:, None]))
    return above.sum(dim=1).double()


def main():
    split = sys.argv[1]
    _, valid, test, n_users, n_items, all_pos, tu, ti = read_split(split)
    print(f"{n_users} users, {n_items} items, {len(tu)} training pairs")

    ok = True
    # The split as written, then with 3 items nobody trained on (zero-degree rows: d^-1/2 = 0)
    # and with some pairs repeated (the official UserItemNet sums them).
    rep = np.arange(0, len(tu), 7)
    variants = [("as written", tu, ti, n_items),
                ("+3 zero-degree items", tu, ti, n_items + 3),
                ("repeated pairs", np.sort(np.concatenate([tu, tu[rep]])),
                 np.concatenate([ti, ti[rep]])[np.argsort(np.concatenate([tu, tu[rep]]),
                                                          kind="stable")], n_items)]
    for name, vu, vi, m in variants:
        n = n_users + m
        old = official_graph(vu, vi, n_users, m)
        row, col, val = adjacency(vu, vi, n_users, m)
        new = torch.sparse_coo_tensor(
            torch.stack([torch.from_numpy(row), torch.from_numpy(col)]), torch.from_numpy(val),
            (n, n)).coalesce()
        same_idx = old.indices().shape == new.indices().shape and torch.equal(
            old.indices(), new.indices())
        diff = (old.values() - new.values()).abs().max().item() if same_idx else float("nan")
        zero_deg = int((np.bincount(np.concatenate([vu, vi + n_users]), minlength=n) == 0).sum())
        print(f"adjacency ({name}): nnz official {old._nnz()} new {new._nnz()}, same indices "
              f"{same_idx}, max abs value diff {diff}, dtypes {old.dtype}/{new.dtype}, "
              f"zero-degree nodes {zero_deg}")
        ok &= same_idx and diff == 0.0 and old.dtype == new.dtype and old.shape == new.shape

    torch.manual_seed(0)
    all_u = torch.randn(n_users, 64) * 0.1
    all_i = torch.randn(n_items, 64) * 0.1
    # A few exact ties with the test item, to exercise the tie rule.
    all_i[1:5] = all_i[0]
    ref = dense_ranks(all_u, all_i, all_pos, valid, test)
    for elems in [1 << 24, n_items * 64, n_items * 7, 1]:
        got = block_ranks(all_u, all_i, tu, ti, valid, test, block_elems=elems)
        same = torch.equal(ref, got)
        ok &= same
        print(f"block evaluation, {max(1, elems // n_items)} users/block: ranks equal {same} "
              f"(recall@20 {(ref < 20).double().mean().item():.4f} vs "
              f"{(got < 20).double().mean().item():.4f})")
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
