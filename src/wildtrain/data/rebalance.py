"""ROI rebalancing: how many times each training crop is shown per epoch, so that near-identical crops of one
common herd do not dominate a species, and rare looks of a species are not drowned.

Crops of a class are clustered (k-means on their embeddings); the class's target count is shared out evenly over
its clusters — a big cluster is capped, a small one repeated, each crop at most `max_copies` times (what a
cluster cannot take goes to the others). Counts only: the crops themselves are not touched.
"""

from __future__ import annotations

import numpy as np


def share(target: int, capacity: list[int]) -> list[int]:
    """`target` split as evenly as possible over bins of the given capacities (water-filling; a bin below the even
    share is filled, the rest shared again). Sums to min(target, sum(capacity)); remainders go to the larger bins."""
    quota = [0] * len(capacity)
    open_bins = sorted(range(len(capacity)), key=lambda j: (-capacity[j], j))
    left = min(target, sum(capacity))
    while left and open_bins:
        even = left // len(open_bins)
        full = [j for j in open_bins if capacity[j] - quota[j] <= even]
        if full:  # these take all they can; share the rest again among the others
            for j in full:
                left -= capacity[j] - quota[j]
                quota[j] = capacity[j]
            open_bins = [j for j in open_bins if j not in full]
            continue
        for j in open_bins:
            quota[j] += even
        left -= even * len(open_bins)
        for j in open_bins[:left]:  # remainder of the even split, one each to the largest bins
            quota[j] += 1
        left = 0
    return quota


def copies_in_cluster(quota: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`quota` showings over `n` crops: each crop quota // n times, a random `quota % n` of them once more."""
    out = np.full(n, quota // n, dtype=int)
    out[rng.choice(n, size=quota % n, replace=False)] += 1
    return out


def kmeans(embeddings: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k <= 1 or len(embeddings) <= 1:
        return np.zeros(len(embeddings), dtype=int)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embeddings).astype(int)


def plan(labels: np.ndarray, embeddings: np.ndarray, clusters: int, target: int, max_copies: int,
         seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(copies per crop, cluster per crop) — cluster ids are per class. `target` 0: the median class count."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    counts = [int((labels == c).sum()) for c in classes]
    goal = target or int(np.median(counts))
    copies, cluster = np.zeros(len(labels), dtype=int), np.zeros(len(labels), dtype=int)
    rng = np.random.default_rng(seed)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        ids = kmeans(embeddings[idx], min(clusters, len(idx)), seed)
        cluster[idx] = ids
        members = [idx[ids == j] for j in range(ids.max() + 1)]
        for m, q in zip(members, share(goal, [len(m) * max_copies for m in members])):
            copies[m] = copies_in_cluster(q, len(m), rng)
    return copies, cluster


def report(labels: np.ndarray, copies: np.ndarray, cluster: np.ndarray, class_names: list[str]) -> dict:
    """Counts before and after per class and per cluster; `before` sums to the crops, `after` to the showings."""
    out = {}
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(np.asarray(labels) == c)
        per = {str(j): {"before": int((cluster[idx] == j).sum()), "after": int(copies[idx][cluster[idx] == j].sum())}
               for j in np.unique(cluster[idx])}
        out[name] = {"before": len(idx), "after": int(copies[idx].sum()), "unused": int((copies[idx] == 0).sum()),
                     "clusters": per}
    return out
