"""PyTorch twin of the Rust SASRec: pmixer/SASRec.pytorch's model before 2025 (= kang205/SASRec's
block order), with the same masks, loss, sampler and optimiser as our Rust code, on the split our
code writes (`cargo xtask data prepare <dataset> --out DIR`, file dataset.json).

Block: q = LN(x); y = q + Dropout(softmax(causal+padding-masked (qWq)(xWk)^T/sqrt(d)))(xWv);
z = LN(y); x = z + Dropout(W2 Dropout(relu(W1 z))); padding rows zeroed; final LN.
Loss: BCE on (positive, one sampled negative) logits at every real position. Adam(0.9, 0.98, 1e-8).
Init: xavier_normal_ on every matrix (as pmixer), zero biases.

Timing: only forward + backward + Adam are timed; batches are sampled beforehand (pmixer samples
in worker processes), so the reported time per epoch is a lower bound for PyTorch.
Prints one JSON object: seconds_per_epoch, test full-ranking NDCG@10/HR@10 (train+valid masked)
and the 100-sampled-negatives HR@10/NDCG@10, the evaluation's seconds and the peak RSS.
Runs at the paper's size (AMZ: ~94K users x 39K items): the evaluation scores blocks of
EVAL_BLOCK users, never a dense users x items matrix; nothing else is users x items.

Usage: peer_sasrec.py DATASET_JSON EPOCHS THREADS MAXLEN DROPOUT [SEED]
"""

import json
import math
import resource
import sys
import time

import numpy as np
import torch
from torch import nn

# Users scored at once in the evaluation (a block x items score matrix; 40 MB at 39K items).
EVAL_BLOCK = 256


class SASRec(nn.Module):
    def __init__(self, n_items, maxlen, d, n_blocks, dropout):
        super().__init__()
        self.d = d
        # Row 0 is padding; real items are 1..n_items.
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(maxlen, d)
        self.drop = nn.Dropout(dropout)
        ln = lambda: nn.LayerNorm(d, eps=1e-8)
        self.ln1 = nn.ModuleList([ln() for _ in range(n_blocks)])
        self.ln2 = nn.ModuleList([ln() for _ in range(n_blocks)])
        lin = lambda: nn.ModuleList([nn.Linear(d, d) for _ in range(n_blocks)])
        self.wq, self.wk, self.wv, self.w1, self.w2 = lin(), lin(), lin(), lin(), lin()
        self.last_ln = ln()
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.xavier_normal_(p)
            elif "ln" not in name:
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def feats(self, seqs):
        b, L = seqs.shape
        real = seqs != 0
        x = self.item_emb(seqs) * math.sqrt(self.d) + self.pos_emb.weight[None, :L]
        x = self.drop(x) * real[..., None]
        allowed = torch.tril(torch.ones(L, L, dtype=torch.bool))[None] & real[:, None, :]
        for i in range(len(self.ln1)):
            q = self.ln1[i](x)
            s = self.wq[i](q) @ self.wk[i](x).transpose(1, 2) / math.sqrt(self.d)
            a = torch.softmax(s.masked_fill(~allowed, -(2.0**32) + 1), dim=-1) * real[..., None]
            y = q + self.drop(a) @ self.wv[i](x)
            z = self.ln2[i](y)
            f = self.drop(self.w2[i](self.drop(torch.relu(self.w1[i](z)))))
            x = (z + f) * real[..., None]
        return self.last_ln(x)


def right_aligned(seq, maxlen):
    s = seq[-maxlen:]
    return [0] * (maxlen - len(s)) + s


def main():
    path, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    maxlen, dropout = int(sys.argv[4]), float(sys.argv[5])
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else 2020
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ds = json.load(open(path))
    n_items = len(ds["item_ids"])
    # Shift ids by one so that 0 can be padding.
    train = [[i + 1 for i in t] for t in ds["train"]]
    valid = [i + 1 for i in ds["valid"]]
    test = [i + 1 for i in ds["test"]]
    seen = [set(t) for t in train]
    users = [u for u, t in enumerate(train) if len(t) >= 2]
    d, n_blocks, lr, batch = 50, 2, 1e-3, 128

    model = SASRec(n_items, maxlen, d, n_blocks, dropout)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-8)
    bce = nn.BCEWithLogitsLoss()

    def sample(us):
        seqs, pos, neg = [], [], []
        for u in us:
            t = train[u]
            seqs.append(right_aligned(t[:-1], maxlen))
            p = right_aligned(t[1:], maxlen)
            pos.append(p)
            n = []
            for x in p:
                if x == 0:
                    n.append(0)
                    continue
                while True:
                    c = int(rng.integers(1, n_items + 1))
                    if c not in seen[u]:
                        break
                n.append(c)
            neg.append(n)
        return tuple(torch.tensor(v, dtype=torch.long) for v in (seqs, pos, neg))

    step_secs, losses = 0.0, []
    for _ in range(epochs):
        order = rng.permutation(users)
        batches = [sample(order[i : i + batch]) for i in range(0, len(order), batch)]
        model.train()
        t0 = time.perf_counter()
        total = 0.0
        for seqs, pos, neg in batches:
            h = model.feats(seqs)
            pl = (h * model.item_emb(pos)).sum(-1)
            nl = (h * model.item_emb(neg)).sum(-1)
            m = pos != 0
            loss = bce(pl[m], torch.ones_like(pl[m])) + bce(nl[m], torch.zeros_like(nl[m]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        step_secs += time.perf_counter() - t0
        losses.append(total / len(batches))

    model.eval()
    t_eval = time.perf_counter()
    hits = ndcg = s_hits = s_ndcg = 0.0
    n_eval = 0
    with torch.no_grad():
        items = model.item_emb.weight[1:]
        ids = torch.arange(n_items)[None]
        # Users in blocks of EVAL_BLOCK: one block x items score matrix at a time, never users x
        # items. Same ranks and the same negative draws (same rng order) as one user at a time.
        for start in range(0, len(train), EVAL_BLOCK):
            us = list(range(start, min(start + EVAL_BLOCK, len(train))))
            us = [u for u in us if train[u]]
            if not us:
                continue
            hist = [train[u] + [valid[u]] for u in us]
            h = model.feats(torch.tensor([right_aligned(x, maxlen) for x in hist]))[:, -1]
            scores = h @ items.T
            rows = torch.arange(len(us))
            t = torch.tensor([test[u] - 1 for u in us])
            target = scores[rows, t]
            hr = torch.repeat_interleave(rows, torch.tensor([len(x) for x in hist]))
            hc = torch.tensor([i - 1 for x in hist for i in x])
            masked = scores.index_put((hr, hc), torch.tensor(-float("inf")))
            # Ties go to the lower item id: >= below the test item, > above it.
            above = ((masked >= target[:, None]) & (ids < t[:, None])) | (
                (masked > target[:, None]) & (ids > t[:, None])
            )
            rank = above.sum(dim=1).tolist()
            negs = []
            for r, u in enumerate(us):
                if test[u] not in hist[r] and rank[r] < 10:
                    hits += 1
                    ndcg += 1 / math.log2(rank[r] + 2)
                n = []
                while len(n) < 100:
                    c = int(rng.integers(1, n_items + 1))
                    if c not in seen[u]:
                        n.append(c)
                negs.append(n)
            s_above = (scores.gather(1, torch.tensor(negs) - 1) > target[:, None]).sum(dim=1)
            for a in s_above.tolist():
                if a < 10:
                    s_hits += 1
                    s_ndcg += 1 / math.log2(a + 2)
            n_eval += len(us)
    t_eval = time.perf_counter() - t_eval
    print(
        json.dumps(
            {
                "model": "torch-sasrec",
                "threads": threads,
                "epochs": epochs,
                "maxlen": maxlen,
                "dropout": dropout,
                "torch": torch.__version__,
                "seconds_per_epoch": step_secs / max(epochs, 1),
                "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None,
                "ndcg@10": ndcg / len(train),
                "hr@10": hits / len(train),
                "sampled_hr@10": s_hits / n_eval,
                "sampled_ndcg@10": s_ndcg / n_eval,
                "eval_seconds": t_eval,
                "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
