"""COCO mAP for any resample of the test images, without rerunning COCOeval: the per-image match table.

COCOeval.evaluate() already decides, per image and class, which detection matches which ground truth at every IoU
threshold (greedy by score, crowd and out-of-range boxes ignored, at most maxDets per image and class). Those
decisions do not depend on the other images, so they are taken from it once (`evalImgs`, area `all`, the last
maxDets). A resample only changes how often each image counts: COCOeval.accumulate()'s cumulative TP/FP counts become
weighted cumulative sums over the detections in score order, and its 101-point interpolated precision is computed
from them exactly as pycocotools does (the recall threshold test uses the same floating-point division). On the test
set itself (every image once) this gives pycocotools' own mAP50 and mAP50-95 (tests check it to 1e-9).

Counting error: per image and class, the boxes scored >= the predict-time confidence against the true animals
(crowd regions are not animals to count).
"""

from __future__ import annotations

import numpy as np

from wildtrain.evaluate.bootstrap import CHUNK_ELEMENTS

EPS = np.spacing(1)  # pycocotools' precision denominator guard


class DetectionTable:
    kind = "detection"

    def __init__(self, units: list[str], image_unit: np.ndarray, class_names: list[str], iou_thresholds: np.ndarray,
                 recall_thresholds: np.ndarray, det_class: np.ndarray, det_image: np.ndarray, det_score: np.ndarray,
                 det_tp: np.ndarray, det_fp: np.ndarray, gt_count: np.ndarray, count_true: np.ndarray,
                 count_pred: np.ndarray):
        self.units, self.class_names = list(units), list(class_names)
        self.image_unit = np.asarray(image_unit, np.int64)  # image -> unit index
        self.iou_thresholds, self.recall_thresholds = np.asarray(iou_thresholds), np.asarray(recall_thresholds)
        self.det_class, self.det_image = np.asarray(det_class, np.int64), np.asarray(det_image, np.int64)
        self.det_score = np.asarray(det_score, np.float64)
        self.det_tp, self.det_fp = np.asarray(det_tp, bool), np.asarray(det_fp, bool)  # [detections, iou thr]
        self.gt_count = np.asarray(gt_count, np.int64)  # [image, class]: ground truth COCOeval does not ignore
        self.count_true, self.count_pred = np.asarray(count_true, np.int64), np.asarray(count_pred, np.int64)

    @classmethod
    def build(cls, dataset, results: list[dict], ev, count_conf: float, unit_of) -> "DetectionTable":
        """From the dataset, its COCO results and the COCOeval that scored them (after evaluate(); None when there was
        nothing to score). `unit_of(image dict)` names the resampling unit of an image."""
        image_ids = sorted(im["id"] for im in dataset.images)
        by_id = {im["id"]: im for im in dataset.images}
        row = {i: k for k, i in enumerate(image_ids)}
        cat_ids = sorted(dataset.category_ids)
        names = dict(zip(dataset.category_ids, dataset.class_names))
        col = {c: k for k, c in enumerate(cat_ids)}
        unit_names = [unit_of(by_id[i]) for i in image_ids]
        units = sorted(set(unit_names))
        unit_index = {u: k for k, u in enumerate(units)}
        n_img, n_cls = len(image_ids), len(cat_ids)
        iou_thr = ev.params.iouThrs if ev is not None else np.linspace(.5, .95, 10)
        rec_thr = ev.params.recThrs if ev is not None else np.linspace(.0, 1.00, 101)
        gt_count = np.zeros((n_img, n_cls), np.int64)
        det_parts: list[tuple] = []
        if ev is not None:
            n_area = len(ev.params.areaRng)
            for k, cat in enumerate(ev.params.catIds):  # area `all` (index 0), maxDets[-1], in accumulate's order
                scores, images, tps, fps = [], [], [], []
                for i, img in enumerate(ev.params.imgIds):
                    e = ev.evalImgs[k * n_area * len(ev.params.imgIds) + i]
                    if e is None:
                        continue
                    gt_count[row[img], col[cat]] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
                    dtm, dtig = np.asarray(e["dtMatches"]), np.asarray(e["dtIgnore"], bool)
                    scores.append(np.asarray(e["dtScores"], np.float64))
                    images.append(np.full(len(e["dtScores"]), row[img]))
                    tps.append(((dtm != 0) & ~dtig).T)
                    fps.append(((dtm == 0) & ~dtig).T)
                if scores:
                    s = np.concatenate(scores)
                    order = np.argsort(-s, kind="mergesort")  # accumulate's order (ties: image order)
                    det_parts.append((np.full(len(s), col[cat]), np.concatenate(images)[order], s[order],
                                      np.concatenate(tps)[order], np.concatenate(fps)[order]))
        else:  # nothing was scored: every true box is still there to count and to find
            for a in dataset.annotations:
                if not a.get("iscrowd", 0):
                    gt_count[row[a["image_id"]], col[a["category_id"]]] += 1
        count_true, count_pred = np.zeros_like(gt_count), np.zeros_like(gt_count)
        for a in dataset.annotations:
            if not a.get("iscrowd", 0):
                count_true[row[a["image_id"]], col[a["category_id"]]] += 1
        for r in results:
            if r["score"] >= count_conf:
                count_pred[row[r["image_id"]], col[r["category_id"]]] += 1
        t = len(iou_thr)
        parts = list(zip(*det_parts)) if det_parts else [[np.zeros(0, np.int64)], [np.zeros(0, np.int64)],
                                                          [np.zeros(0)], [np.zeros((0, t), bool)],
                                                          [np.zeros((0, t), bool)]]
        return cls(units, np.array([unit_index[u] for u in unit_names], np.int64), [names[c] for c in cat_ids],
                   iou_thr, rec_thr, *[np.concatenate(p) for p in parts], gt_count, count_true, count_pred)

    @classmethod
    def from_arrays(cls, units: list[str], a: dict[str, np.ndarray]) -> "DetectionTable":
        return cls(units, a["image_unit"], [str(c) for c in a["class_names"]], a["iou_thresholds"],
                   a["recall_thresholds"], a["det_class"], a["det_image"], a["det_score"], a["det_tp"], a["det_fp"],
                   a["gt_count"], a["count_true"], a["count_pred"])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"image_unit": self.image_unit, "class_names": np.array(self.class_names),
                "iou_thresholds": self.iou_thresholds, "recall_thresholds": self.recall_thresholds,
                "det_class": self.det_class, "det_image": self.det_image, "det_score": self.det_score,
                "det_tp": self.det_tp, "det_fp": self.det_fp, "gt_count": self.gt_count,
                "count_true": self.count_true, "count_pred": self.count_pred}

    def scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """[R, units] -> map50_95, map50, map75, mar_100, count_mae/rmse/bias and per class ap50, ap50_95,
        count_mae, count_rmse: each [R]."""
        w_img = np.asarray(weights, np.int64)[:, self.image_unit]  # [R, images]
        r = len(w_img)
        t50, t75 = (int(np.argmin(np.abs(self.iou_thresholds - v))) for v in (0.5, 0.75))
        ap = np.full((r, len(self.class_names), len(self.iou_thresholds)), np.nan)
        recall = np.full_like(ap, np.nan)
        for k in range(len(self.class_names)):
            ap[:, k], recall[:, k] = self._class_ap(k, w_img)
        valid = ~np.isnan(ap[:, :, 0])
        n_valid = valid.sum(1)

        def mean_over_classes(v: np.ndarray) -> np.ndarray:  # COCOeval's summarize; 0 where no class has truth,
            total = np.where(valid, v, 0.0).sum(1)  # as metrics/eval.json reports it
            return np.where(n_valid > 0, total / np.maximum(n_valid, 1), 0.0)

        out = {"map50_95": mean_over_classes(ap.mean(2)), "map50": mean_over_classes(ap[:, :, t50]),
               "map75": mean_over_classes(ap[:, :, t75]), "mar_100": mean_over_classes(recall.mean(2))}
        out.update(self._counts(w_img))
        for k, name in enumerate(self.class_names):
            out[f"per_class.{name}.ap50_95"], out[f"per_class.{name}.ap50"] = ap[:, k].mean(1), ap[:, k, t50]
        return out

    def _class_ap(self, k: int, w_img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[R, iou thr] AP and recall of class k (nan where the resample has no ground truth of it)."""
        r, t = len(w_img), len(self.iou_thresholds)
        npig = w_img @ self.gt_count[:, k]  # [R]
        ap, recall = np.zeros((r, t)), np.zeros((r, t))
        sel = self.det_class == k
        n = int(sel.sum())
        if n:
            tp, fp, images = self.det_tp[sel].T.astype(np.int32), self.det_fp[sel].T.astype(np.int32), \
                self.det_image[sel]  # int32: counts never reach 2**31, and half the memory traffic of int64
            need = self._needed(npig)  # [R, recall thr]: TPs for each recall threshold
            step = max(1, CHUNK_ELEMENTS // (t * n))
            for s in range(0, r, step):
                w = w_img[s:s + step, images][:, None, :].astype(np.int32)  # [r, 1, n]
                tpc, fpc = np.cumsum(w * tp, axis=2, dtype=np.int32), np.cumsum(w * fp, axis=2, dtype=np.int32)
                tpf = tpc.astype(np.float64)
                precision = tpf / (fpc + tpf + EPS)
                envelope = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1]
                ap[s:s + step] = _interpolated(tpc, envelope, need[s:s + step]).mean(2)
                recall[s:s + step] = tpf[..., -1] / np.maximum(npig[s:s + step], 1)[:, None]
        missing = npig == 0
        ap[missing], recall[missing] = np.nan, np.nan
        return ap, recall

    def _needed(self, npig: np.ndarray) -> np.ndarray:
        """Per resample and recall threshold r: the fewest true positives c with float(c / npig) >= r, the test
        pycocotools makes with np.searchsorted(tp / npig, recThrs, side='left')."""
        total = np.maximum(npig, 1).astype(np.float64)[:, None]
        thr = self.recall_thresholds[None, :]
        c = np.ceil(thr * total).astype(np.int64)
        for _ in range(3):  # the product may round either way: settle on the exact division's answer
            c = np.where((c > 0) & ((c - 1) / total >= thr), c - 1, c)
            c = np.where(c / total < thr, c + 1, c)
        return c

    def _counts(self, w_img: np.ndarray) -> dict[str, np.ndarray]:
        images = w_img.sum(1).astype(np.float64)
        err = (self.count_pred - self.count_true).astype(np.float64)  # [image, class]
        total = err.sum(1)
        out = {"count_mae": (w_img @ np.abs(total)) / images, "count_rmse": np.sqrt((w_img @ total ** 2) / images),
               "count_bias": (w_img @ total) / images}
        for k, name in enumerate(self.class_names):
            out[f"per_class.{name}.count_mae"] = (w_img @ np.abs(err[:, k])) / images
            out[f"per_class.{name}.count_rmse"] = np.sqrt((w_img @ err[:, k] ** 2) / images)
        return out


def _interpolated(tpc: np.ndarray, envelope: np.ndarray, need: np.ndarray) -> np.ndarray:
    """[r, T, recall thr] interpolated precision: the envelope at the first detection whose cumulative TP count
    reaches each threshold's need, 0 past the last (pycocotools' searchsorted + IndexError). One searchsorted over
    all rows: each row is shifted by a multiple of a bound above its counts, so rows never interleave."""
    r, t, n = tpc.shape
    bound = int(tpc[..., -1].max()) + 2
    shift = (np.arange(r * t, dtype=np.int64) * bound).reshape(r, t, 1)  # int64: r * t * bound may pass 2**31
    flat = (tpc + shift).ravel()
    queries = need[:, None, :] + shift  # [r, T, recall thr]
    idx = np.searchsorted(flat, queries.ravel(), side="left").reshape(queries.shape) - \
        (np.arange(r * t, dtype=np.int64) * n).reshape(r, t, 1)
    found = idx < n
    return np.where(found, np.take_along_axis(envelope, np.minimum(idx, n - 1), axis=2), 0.0)
