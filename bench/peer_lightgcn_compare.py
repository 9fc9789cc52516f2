"""Side-by-side of one Rust run (xtask JSON) and one PyTorch peer run (JSON lines).

Usage: peer_lightgcn_compare.py THREADS RUST_JSON TORCH_JSONL [RUST_PEAK_RSS_KIB_FILE]
"""

import json
import os
import sys

threads, rust_path, torch_path = sys.argv[1], sys.argv[2], sys.argv[3]
rss_path = sys.argv[4] if len(sys.argv) > 4 else None
rust = json.load(open(rust_path))
rows = [json.loads(line) for line in open(torch_path)]
epochs = [r for r in rows if "epoch" in r]
final = next(r for r in rows if r.get("final"))
t_torch = sum(r["seconds"] for r in epochs) / len(epochs)
t_torch_steps = sum(r["seconds"] - r["sampling_seconds"] for r in epochs) / len(epochs)
t_rust = rust["seconds_per_epoch"]
print(f"threads {threads}: {len(epochs)} epochs")
print(f"  seconds/epoch   rust {t_rust:.4f}   torch {t_torch:.4f} "
      f"(of which python sampling {t_torch - t_torch_steps:.4f})")
print(f"  speed-up        {t_torch / t_rust:.1f}x per epoch, "
      f"{t_torch_steps / t_rust:.1f}x against torch's steps alone")
for m in ["recall@20", "ndcg@20"]:
    r, t = rust[m], final[m]
    print(f"  test {m:<9} rust {r:.4f}   torch {t:.4f}   ({(r - t) / t * 100:+.1f}%)")
print(f"  test hits@10    rust {rust['test_hits@10']}   torch {final['hits@10']}")
print(f"  final loss      rust {rust['final_loss']:.4f}   torch {epochs[-1]['loss']:.4f}")
rust_rss = None
if rss_path and os.path.exists(rss_path):
    last = open(rss_path).read().split()
    rust_rss = f"{int(last[-1]) / 1024:.0f} MiB" if last and last[-1].isdigit() else None
if "max_rss_mib" in final:
    print(f"  peak RSS        rust {rust_rss or 'n/a'}   torch {final['max_rss_mib']:.0f} MiB "
          f"(torch evaluation {final['eval_seconds']:.1f} s, not in seconds/epoch)")
