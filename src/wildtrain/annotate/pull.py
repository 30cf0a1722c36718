"""`wildtrain annotate pull --name NAME`: the reviewed tasks of a Label Studio project, versioned as data/source/NAME.

The project's JSON export (only tasks that hold an annotation) is read with the `label_studio` format reader; each
task's image is found through the local-files path it names, under the server's document root. Two layouts:
- merged (default): the current source (params.yaml data.source, read and validated as prepare does) plus the
  reviewed images, as one COCO folder. A reviewed image that is also in the source (same pixels after validation)
  replaces that image's boxes; a new one is added under `reviewed/`. Classes are matched by name.
- `--beside`: only the reviewed images, as the export itself (`label_studio.json` + `images/`), a source of its own.
Either way `label_studio/lineage.json` names the server, project, export time, the pre-annotations' model
versions and what reviewers changed (boxes kept, edited, deleted, added), and `label_studio/export.json` keeps the
raw export; prepare copies the lineage into the validation report. Then `wildtrain data add` versions the folder
(everything is built in a staging folder first: a failure leaves data/source as it was).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath

import numpy as np

from wildtrain.annotate.client import Client
from wildtrain.data.coco import CocoDataset
from wildtrain.data.formats import label_studio
from wildtrain.errors import WildtrainError
from wildtrain.io import link_or_copy, write_json
from wildtrain.layout import REVIEW_LINEAGE as LINEAGE

EXPORT = "label_studio/export.json"


def pick_project(client: Client, title: str | None) -> dict:
    if title:
        found = client.project(title)
        if found is None:
            raise WildtrainError(f"Label Studio at {client.url}: no project titled '{title}'")
        return found
    ours = [p for p in client.projects() if str(p.get("title", "")).startswith("wildtrain ")]
    if len(ours) != 1:
        titles = ", ".join(f"'{p['title']}'" for p in ours) or "none"
        raise WildtrainError(f"Label Studio at {client.url}: {len(ours)} projects made by `annotate push` ({titles}); "
                             f"name one with --project")
    return ours[0]


def changes(task: dict) -> dict[str, int]:
    """What the reviewer did to the pre-annotations (boxes or polygons): kept as predicted, edited (moved, reshaped
    or relabelled), deleted, and added (result ids: Label Studio keeps a prediction's id when it is accepted)."""
    ann = label_studio.reviewed(task) or {}
    preds = [r for p in task.get("predictions") or [] if isinstance(p, dict)
             for r in p.get("result") or [] if isinstance(r, dict)]
    before = {r.get("id"): r.get("value") for r in preds}
    after = {r.get("id"): r.get("value") for r in ann.get("result") or [] if isinstance(r, dict)}
    kept = sum(1 for k, v in after.items() if k in before and _same(before[k], v))
    edited = sum(1 for k, v in after.items() if k in before and not _same(before[k], v))
    return {"kept": kept, "edited": edited, "deleted": sum(1 for k in before if k not in after),
            "added": sum(1 for k in after if k not in before)}


def _same(a, b) -> bool:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return a == b
    keys = ("x", "y", "width", "height", "rotation")
    try:
        points = np.asarray(a.get("points") or [], float), np.asarray(b.get("points") or [], float)
        same_points = points[0].shape == points[1].shape and bool(np.all(np.abs(points[0] - points[1]) < 1e-6))
    except (TypeError, ValueError):
        same_points = False
    return (all(abs(float(a.get(k) or 0) - float(b.get(k) or 0)) < 1e-6 for k in keys) and same_points
            and a.get("rectanglelabels") == b.get("rectanglelabels")
            and a.get("polygonlabels") == b.get("polygonlabels"))


def bring_images(tasks: list[dict], docs: Path, images: Path) -> list[str]:
    """Link each reviewed task's image into images/ by its base name (its local-files path when names clash);
    the tasks whose image cannot be found are returned (named by task id)."""
    missing, used = [], set()
    for task in tasks:
        ref = label_studio.image_ref(task)
        src = (docs / ref).resolve() if ref and "local-files" in str((task.get("data") or {}).get("image")) else None
        if src is None or not src.is_file() or not src.is_relative_to(docs):
            missing.append(f"task {task.get('id')} ({ref})")
            continue
        name = PurePosixPath(ref).name
        name = name if name not in used else ref
        used.add(name)
        link_or_copy(src, images / name)
    return missing


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def merge(base: CocoDataset, base_images: Path, new: CocoDataset, new_images: Path, out: Path) -> dict:
    """base + new into out/annotations.json + out/images/: new images replace base images with the same pixels."""
    cats = [dict(c) for c in base.categories]
    by_name = {c["name"]: c["id"] for c in cats}
    for c in new.categories:
        if c["name"] not in by_name:
            by_name[c["name"]] = max(by_name.values(), default=0) + 1
            cats.append({"id": by_name[c["name"]], "name": c["name"]})
    new_cat = {c["id"]: by_name[c["name"]] for c in new.categories}
    same = {_digest(base_images / im["file_name"]): im for im in base.images}
    replaced, images, anns = set(), [dict(im) for im in base.images], []
    next_id = max((im["id"] for im in images), default=0) + 1
    new_anns = new.annotations_by_image()
    for im in new.images:
        twin = same.get(_digest(new_images / im["file_name"]))
        if twin is not None:
            target = twin["id"]
            replaced.add(target)
        else:
            target = next_id
            next_id += 1
            images.append({"id": target, "file_name": f"reviewed/{im['file_name']}", "width": im.get("width"),
                           "height": im.get("height")})
            link_or_copy(new_images / im["file_name"], out / "images" / "reviewed" / im["file_name"])
        for a in new_anns.get(im["id"], []):
            anns.append({**a, "image_id": target, "category_id": new_cat[a["category_id"]]})
    kept = [a for a in base.annotations if a["image_id"] not in replaced]
    for im in base.images:
        link_or_copy(base_images / im["file_name"], out / "images" / im["file_name"])
    all_anns = [{**a, "id": k} for k, a in enumerate(kept + anns, start=1)]
    CocoDataset(images, all_anns, cats, {"description": "wildtrain source + Label Studio review"}).save(
        out / "annotations.json")
    return {"replaced": len(replaced), "added_images": len(new.images) - len(replaced)}


def pull(p, root: Path, name: str, project: str | None = None, beside: bool = False, force: bool = False) -> dict:
    from wildtrain.annotate.push import config_labels, document_root
    from wildtrain.data import formats
    from wildtrain.data.validate import validate
    from wildtrain.pipeline.prepare import read_source
    from wildtrain.versioning import add, source_name

    source_name(Path(name), name)  # a bad --name is refused before the server is asked
    client = Client.from_env()
    client.whoami()
    lp = pick_project(client, project)
    exported = client.export(lp["id"])
    if not isinstance(exported, list):
        raise WildtrainError(f"Label Studio at {client.url}: the export of project {lp['id']} is not a task list")
    tasks = [t for t in exported if isinstance(t, dict) and label_studio.reviewed(t) is not None]
    if not tasks:
        raise WildtrainError(f"Label Studio at {client.url}: project '{lp['title']}' (id {lp['id']}) has no reviewed "
                             f"task yet ({len(exported)} exported); review some, then pull")
    # the JSON export names each task's predictions by id only: their boxes and model versions come from the tasks
    predictions = {t.get("id"): t.get("predictions") or [] for t in client.tasks(lp["id"])}
    tasks = [{**t, "predictions": predictions.get(t.get("id"), [])} for t in tasks]
    docs = document_root(root)
    edits = {k: sum(changes(t)[k] for t in tasks) for k in ("kept", "edited", "deleted", "added")}
    lineage = {"label_studio_url": client.url, "project_id": lp["id"], "project_title": lp["title"],
               "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tasks_exported": len(exported),
               "tasks_reviewed": len(tasks), "task_ids": [t.get("id") for t in tasks],
               "model_versions": sorted({str(pr.get("model_version")) for t in tasks
                                         for pr in t.get("predictions") or [] if isinstance(pr, dict)}),
               "boxes": edits, "layout": "beside" if beside else f"merged with {p.data.source}"}
    (root / "data").mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".annotate-", suffix=".tmp", dir=root / "data"))
    try:
        export_dir = staging / ("src" if not beside else name)
        missing = bring_images(tasks, docs, export_dir / "images")
        if missing:
            raise WildtrainError(f"Label Studio project '{lp['title']}': {len(missing)} reviewed task(s) name an "
                                 f"image not found under the document root {docs} (first: {missing[0]}); only "
                                 f"local-files tasks (as `annotate push` makes) can be pulled")
        write_json(export_dir / "label_studio.json", tasks)
        raw, _ = formats.read(export_dir, "label_studio", "label_studio.json", "images")
        if not raw.categories:  # every reviewed image is empty (no animals): the project's classes still apply
            raw.categories = [{"id": k, "name": c} for k, c in
                              enumerate(sorted(config_labels(lp.get("label_config") or "")), start=1)]
        reviewed, report = validate(raw, staging / "reviewed", p.data.invalid_boxes, where=f"{client.url} project "
                                    f"{lp['id']}")
        lineage["validation"] = {"images": report["images"]["kept"], "boxes": report["boxes"]["kept"]}
        if beside:
            out = export_dir
        else:
            out = staging / name
            base, _ = read_source(p.data, root, staging / "base")
            lineage.update(merge(base, staging / "base", reviewed, staging / "reviewed", out))
        write_json(out / EXPORT, exported)
        write_json(out / LINEAGE, lineage)
        done = add(str(out), name, root, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    b = lineage["boxes"]
    print(f"annotate pull: {len(tasks)} reviewed task(s) of Label Studio project '{lp['title']}' (id {lp['id']}): "
          f"boxes kept {b['kept']}, edited {b['edited']}, deleted {b['deleted']}, added {b['added']}; "
          f"{done['source']} ({lineage['layout']}) versioned by DVC, md5 {done['md5']}; params.yaml data.source = "
          f"{done['source']}")
    print(f"next: git add {done['dvc_file']} {Path(done['source']).parent / '.gitignore'} params.yaml && git commit "
          f"-m 'data: {name} (Label Studio review)' && dvc repro")
    return {**done, **lineage}
