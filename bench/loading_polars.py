"""The polars side of bench/loading_vs_polars.sh, and the generator of its input files.

    python loading_polars.py gen DIR LINES [SEED]
        Writes DIR/csv-2014/ratings_Movies_and_TV.csv (`user,item,rating,timestamp`, no header)
        and DIR/json-2018/Movies_and_TV.json (one review object per line with the fields of the
        2018 dump), LINES lines each, the same interactions in both. A file that already has
        LINES lines is kept. The same LINES and SEED give the same bytes.

    python loading_polars.py prepare FORMAT FILE OUT_PARQUET [K]
        FORMAT is csv-2014 or json-2018. Reads FILE with polars and applies the rules of
        crates/datasets/src/preprocess.rs: order per user by (timestamp, position in the file),
        keep the earliest of a repeated (user, item), iterative k-core (users need max(K, 3)
        interactions, items K, both counted on the same snapshot, repeated until nothing
        changes), chronological leave-one-out. Writes one row per user (user, train, valid, test)
        to OUT_PARQUET and prints the counts as one JSON line.

    python loading_polars.py compare OUT_PARQUET RECBOLE_INTER
        Checks that the split in OUT_PARQUET is the one `xtask data prepare --out` wrote as
        RecBole `.inter` (user, item, position in the user's sequence): the same users with the
        same items in the same order. Prints the verdict as one JSON line; exits 1 on a
        difference.
"""

import json
import os
import sys
import time

import polars as pl

# Amazon Movies & TV 2018 has 8.77 M reviews by 3.83 M users of 182 K items; its published
# 5-core keeps 3.41 M reviews (39%) by 297 K users of 60 K items. Users and items are drawn
# independently from Zipf–Mandelbrot laws, p(rank r) ∝ (r + q)^-a, over pools sized per line,
# with parameters set so that at 10 M lines the raw file has 4.2 M users and 220 K items, 3% of
# lines repeat a (user, item), and the 5-core keeps 38% of the lines (227 K users, 106 K items).
USER_POOL_PER_LINE = 1.4
ITEM_POOL_PER_LINE = 0.022
USER_A, USER_Q = 0.82, 20.0
ITEM_A, ITEM_Q = 1.0, 10.0
# Reviews are dated to the day (as in the dump) and a user's fall within two years, so active
# users have same-day reviews and the tie-break (position in the file) matters.
DAY = 86_400
FIRST_DAY = 10_000  # 1997-05-19
SPAN_DAYS = 7_000
USER_WINDOW_DAYS = 730
RATING_P = [0.06, 0.05, 0.10, 0.20, 0.59]

# Review texts of the lengths real ones have, with the escapes a JSON parser meets in the dump
# (written here as they appear in the file).
TEXTS = [
    "Great movie.",
    "My kids love it, we watched it twice in one weekend.",
    'The \\"director\'s cut\\" adds twenty minutes and they are worth it. Picture and sound '
    "are fine on an ordinary TV.",
    "Caf\\u00e9 scenes aside, the plot drags in the middle.\\nStill, the ending makes up for it "
    "and the cast is excellent throughout. Recommended for fans of the genre; others may want "
    "to rent it first.",
    "I bought this as a gift. It arrived on time, the case was not damaged, and the disc plays "
    "without skipping. The story itself is a classic: a small town, a secret, and two families "
    "that have not spoken in years. The acting is better than I expected from a TV production "
    "and the score is lovely. Four discs, about ten hours in all.",
    "Not for me.",
    "Season two is where the show finds its voice. The writing is sharper, the side characters "
    "get real arcs, and the last three episodes are as good as anything on television then.",
    "Five stars.",
]
SUMMARIES = ["Five Stars", "Four Stars", "Great", "Not bad", "Disappointing", "A classic"]


def zipf_ranks(rng, n_draws, pool, a, q):
    """`n_draws` ranks in [0, pool) with p(r) ∝ (r + q)^-a, by inverting the cumulative sum."""
    import numpy as np

    w = (np.arange(pool, dtype=np.float64) + q) ** -a
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(n_draws)), pool - 1)


def ids(prefix, n, width, mult):
    """`n` distinct ids: `prefix` + `width` base-36 characters. The last 8 spell
    (k * mult) mod 2^40 (a bijection, `mult` being odd), the first `width - 8` a hash of it, so
    the characters vary like the dump's rather than counting up."""
    import numpy as np

    v = (np.arange(n, dtype=np.uint64) * np.uint64(mult)) % np.uint64(1 << 40)
    high = (v * np.uint64(0x9E37)) % np.uint64(36 ** (width - 8))
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
    chars = np.empty((n, width + 1), np.uint8)
    chars[:, 0] = ord(prefix)
    for k in range(width, 0, -1):
        src = v if k > width - 8 else high
        chars[:, k] = alphabet[(src % np.uint64(36)).astype(np.intp)]
        src //= np.uint64(36)
    return pl.Series(chars.view(f"S{width + 1}").ravel()).cast(pl.String)


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def write_lines(path, series):
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        step = 1_000_000
        for start in range(0, len(series), step):
            f.write("\n".join(series.slice(start, step).to_list()))
            f.write("\n")
    os.replace(tmp, path)


def gen(directory, lines, seed=7):
    import numpy as np

    csv_path = os.path.join(directory, "csv-2014", "ratings_Movies_and_TV.csv")
    json_path = os.path.join(directory, "json-2018", "Movies_and_TV.json")
    todo = [p for p in (csv_path, json_path) if not (os.path.isfile(p) and count_lines(p) == lines)]
    if not todo:
        print(f"kept {csv_path} and {json_path} ({lines} lines each)", file=sys.stderr)
        return
    t0 = time.time()
    rng = np.random.default_rng(seed)
    n_users = max(10, int(lines * USER_POOL_PER_LINE))
    n_items = max(10, int(lines * ITEM_POOL_PER_LINE))
    # Popularity rank → id through a random permutation, so ids say nothing about popularity.
    user = rng.permutation(n_users)[zipf_ranks(rng, lines, n_users, USER_A, USER_Q)]
    item = rng.permutation(n_items)[zipf_ranks(rng, lines, n_items, ITEM_A, ITEM_Q)]
    first_day = FIRST_DAY + rng.integers(0, SPAN_DAYS - USER_WINDOW_DAYS, n_users)
    day = first_day[user] + rng.integers(0, USER_WINDOW_DAYS, lines)
    rating = rng.choice(np.arange(1, 6), size=lines, p=RATING_P)
    text = rng.integers(0, len(TEXTS), lines)
    summary = rng.integers(0, len(SUMMARIES), lines)
    df = pl.DataFrame(
        {
            "user": ids("A", n_users, 13, 2_654_435_761).gather(user),
            "item": ids("B", n_items, 9, 1_000_003).gather(item),
            "rating": pl.Series(rating).cast(pl.String),
            "ts": pl.Series(day * DAY).cast(pl.String),
            "text": pl.Series(TEXTS).gather(text),
            "summary": pl.Series(SUMMARIES).gather(summary),
        }
    )
    del user, item, day, rating, text, summary
    for p in todo:
        os.makedirs(os.path.dirname(p), exist_ok=True)
    if csv_path in todo:
        line = pl.concat_str(
            "user", pl.lit(","), "item", pl.lit(","), "rating", pl.lit(".0,"), "ts"
        )
        write_lines(csv_path, df.select(line)[:, 0])
    if json_path in todo:
        line = pl.concat_str(
            pl.lit('{"overall": '), "rating",
            pl.lit('.0, "verified": true, "reviewTime": "03 1, 2015", "reviewerID": "'), "user",
            pl.lit('", "asin": "'), "item",
            pl.lit('", "style": {"Format:": " DVD"}, "reviewerName": "J. Doe", "reviewText": "'),
            "text",
            pl.lit('", "summary": "'), "summary",
            pl.lit('", "unixReviewTime": '), "ts", pl.lit("}"),
        )
        write_lines(json_path, df.select(line)[:, 0])
    print(f"generated {lines} lines in {time.time() - t0:.1f} s: {', '.join(todo)}", file=sys.stderr)


def scan(fmt, path):
    """The file as (user, item, ts, seq): seq is the line's position, the documented tie-break.
    Ratings are not read: with no `--min-rating` every rating is an interaction."""
    if fmt == "csv-2014":
        lf = pl.scan_csv(
            path,
            has_header=False,
            schema={"user": pl.String, "item": pl.String, "rating": pl.Float32, "ts": pl.Int64},
        )
    elif fmt == "json-2018":
        lf = pl.scan_ndjson(
            path,
            schema={
                "reviewerID": pl.String,
                "asin": pl.String,
                "overall": pl.Float32,
                "unixReviewTime": pl.Int64,
            },
        ).rename({"reviewerID": "user", "asin": "item", "unixReviewTime": "ts"})
    else:
        raise SystemExit(f"unknown format {fmt}")
    return lf.select("user", "item", "ts").with_row_index("seq")


def prepare(fmt, path, out, k=5):
    if not os.path.isfile(path):  # polars reads a path that matches nothing as no rows
        raise SystemExit(f"no such file: {path}")
    t0 = time.time()
    user_min = max(k, 3)
    # Earliest interaction of every (user, item): sort by (ts, seq), keep the first of each pair.
    # (`maintain_order=True` would also keep that order, at about twice the cost; the split
    # sorts anyway.)
    df = scan(fmt, path).collect()
    raw_lines = df.height
    df = df.sort("ts", "seq").unique(["user", "item"], keep="first")
    deduped = df.height
    t_load = time.time()
    # Iterative k-core: both degrees counted on the same snapshot, as preprocess::k_core does.
    # (Grouping on strings here beat casting to categoricals first, and group_by + semi-joins.)
    passes = 0
    while True:
        passes += 1
        ok = (pl.len().over("user") >= user_min) & (pl.len().over("item") >= k)
        keep = df.select(ok)[:, 0]
        if keep.all():
            break
        df = df.filter(keep)
    t_core = time.time()
    # Leave-one-out on each user's chronological sequence.
    split = (
        df.group_by("user")
        .agg(pl.col("item").sort_by("ts", "seq"))
        .select(
            "user",
            pl.col("item").list.head(pl.col("item").list.len() - 2).alias("train"),
            pl.col("item").list.get(-2).alias("valid"),
            pl.col("item").list.get(-1).alias("test"),
        )
    )
    split.write_parquet(out)
    t_end = time.time()
    print(
        json.dumps(
            {
                "lines": raw_lines,
                "duplicates_removed": raw_lines - deduped,
                "users": split.height,
                "items": df["item"].n_unique(),
                "interactions": df.height,
                "kcore_passes": passes,
                "threads": pl.thread_pool_size(),
                "s_load_dedup": round(t_load - t0, 2),
                "s_kcore": round(t_core - t_load, 2),
                "s_split_write": round(t_end - t_core, 2),
            }
        )
    )


def compare(parquet, inter):
    ours = (
        pl.read_csv(inter, separator="\t", schema={"user": pl.String, "item": pl.String, "pos": pl.Float64})
        .with_columns(pl.col("pos").cast(pl.Int64))
    )
    theirs = (
        pl.read_parquet(parquet)
        .select("user", pl.concat_list(pl.col("train"), pl.col("valid"), pl.col("test")).alias("item"))
        .explode("item", empty_as_null=True)
        .with_columns(pl.int_range(pl.len()).over("user").alias("pos"))
    )
    key = ["user", "pos"]
    only_ours = ours.join(theirs, on=key, how="anti")
    only_polars = theirs.join(ours, on=key, how="anti")
    both = ours.join(theirs, on=key, how="inner")
    differ = both.filter(pl.col("item") != pl.col("item_right"))
    verdict = {
        "xtask_rows": ours.height,
        "polars_rows": theirs.height,
        "positions_only_in_xtask": only_ours.height,
        "positions_only_in_polars": only_polars.height,
        "positions_with_different_item": differ.height,
        "identical": only_ours.height == only_polars.height == differ.height == 0,
    }
    print(json.dumps(verdict))
    if not verdict["identical"]:
        print(differ.head(5), only_ours.head(5), only_polars.head(5), file=sys.stderr)
        sys.exit(1)


def table(tsv):
    """The markdown table of bench/loading_vs_polars.sh: the fastest run of each row."""
    runs = pl.read_csv(tsv, separator="\t")
    rows = (
        runs.sort("wall_s")
        .group_by("tool", "format", maintain_order=True)
        .agg(pl.all().first(), pl.len().alias("runs"), pl.col("rss_kb").max().alias("rss_max"))
    )
    order = ["xtask", "xtask, hash memoised", "polars", "polars, 1 thread"]
    rows = rows.sort(pl.col("format"), pl.col("tool").replace_strict(order, range(len(order))))
    print(
        "| tool | format | lines | wall s | M lines/s | CPU s | peak RSS MiB "
        "| users | items | interactions (after 5-core) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows.iter_rows(named=True):
        print(
            f"| {r['tool']} | {r['format']} | {r['lines']:,} | {r['wall_s']:.2f} "
            f"| {r['lines'] / r['wall_s'] / 1e6:.2f} | {r['cpu_s']:.2f} | {r['rss_max'] / 1024:,.0f} "
            f"| {r['users']:,} | {r['items']:,} | {r['interactions']:,} |"
        )
    n = rows["runs"].max()
    print(f"\n(fastest of {n} run{'s' if n > 1 else ''} per row; peak RSS the largest)")
    for fmt, g in rows.group_by("format", maintain_order=True):
        wall = dict(zip(g["tool"], g["wall_s"]))
        rss = dict(zip(g["tool"], g["rss_max"]))
        agree = g.select("users", "items", "interactions").unique().height == 1
        print(
            f"{fmt[0]}: polars / xtask wall {wall['polars'] / wall['xtask']:.2f}x "
            f"(1 thread {wall['polars, 1 thread'] / wall['xtask']:.2f}x; against the memoised-hash "
            f"run {wall['polars'] / wall['xtask, hash memoised']:.2f}x and "
            f"{wall['polars, 1 thread'] / wall['xtask, hash memoised']:.2f}x), "
            f"peak RSS {rss['polars'] / rss['xtask']:.1f}x; "
            f"counts {'agree' if agree else 'DIFFER'}"
        )


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["-h"]
    if cmd == "gen":
        gen(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 7)
    elif cmd == "prepare":
        prepare(args[0], args[1], args[2], int(args[3]) if len(args) > 3 else 5)
    elif cmd == "compare":
        compare(args[0], args[1])
    elif cmd == "table":
        table(args[0])
    else:
        print(__doc__)
        sys.exit(0 if cmd in ("-h", "--help") else 2)
