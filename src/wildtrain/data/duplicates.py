"""Near-identical images: pairs of 64-bit perceptual hashes within a few bits, found without comparing all pairs.

Multi-index hashing: the 64 bits are cut into max_distance + 1 blocks. Two hashes that differ in at most
max_distance bits agree on at least one whole block (pigeonhole), so only hashes sharing a block value are
compared (numpy popcount on the candidates). With ~13-bit blocks a random set of 50,000 hashes yields under a
million candidates instead of 1.25 billion pairs.
"""

from __future__ import annotations

import numpy as np

MAX_DISTANCE = 4  # bits of 64: a JPEG re-encode (even at quality 40) moves a pHash by 0-4; unrelated scenes 12+


def near_pairs(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) with i < j for every pair of `hashes` (uint64) within max_distance bits."""
    h = np.asarray(hashes, dtype=np.uint64)
    n = len(h)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    edges = np.linspace(0, 64, max_distance + 2).round().astype(int)
    found = [(np.empty(0, np.int64), np.empty(0, np.int64))]
    for lo, hi in zip(edges[:-1], edges[1:]):
        key = (h >> np.uint64(lo)) & np.uint64((1 << int(hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        k = key[order]
        last = np.r_[k[1:] != k[:-1], True]  # the last member of each run of equal block values
        run_end = np.minimum.accumulate(np.where(last, np.arange(n), n)[::-1])[::-1]
        later = run_end - np.arange(n)  # members after this one in its run
        idx, step = np.flatnonzero(later > 0), 1
        while idx.size:  # step s compares each member with the one s places later in its run
            a, b = order[idx], order[idx + step]
            close = np.bitwise_count(h[a] ^ h[b]) <= max_distance
            found.append((np.minimum(a[close], b[close]), np.maximum(a[close], b[close])))
            step += 1
            idx = idx[later[idx] >= step]
    i = np.concatenate([f[0] for f in found])
    j = np.concatenate([f[1] for f in found])
    pairs = np.unique(np.stack([i, j], axis=1), axis=0) if len(i) else np.empty((0, 2), np.int64)
    return pairs[:, 0], pairs[:, 1], np.bitwise_count(h[pairs[:, 0]] ^ h[pairs[:, 1]]).astype(np.int64)


def near_duplicate_links(hashes: list[int | None], max_distance: int = MAX_DISTANCE) -> list[tuple[int, int, int]]:
    """(i, j, distance) links that connect every group of near-identical hashes (None: no hash, never linked).

    Equal hashes are linked to their first holder rather than pairwise, and distinct close hashes through one
    holder each, so a burst of n identical thumbnails gives n - 1 links, not n^2 / 2; the groups are the same.
    """
    holders = [k for k, v in enumerate(hashes) if v is not None]
    if len(holders) < 2:
        return []
    values = np.array([hashes[k] for k in holders], dtype=np.uint64)
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    links = [(holders[first[u]], holders[k], 0) for k, u in enumerate(inverse) if first[u] != k]
    i, j, dist = near_pairs(unique, max_distance)
    for a, b, d in zip(i.tolist(), j.tolist(), dist.tolist()):
        x, y = holders[first[a]], holders[first[b]]
        links.append((min(x, y), max(x, y), d))
    return sorted(links)


def components(links: list[tuple[int, int, int]]) -> list[list[int]]:
    """Connected groups (sorted members, sorted groups) of the linked indices."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in links:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in sorted(parent):
        groups.setdefault(root(x), []).append(x)
    return sorted(groups.values())
