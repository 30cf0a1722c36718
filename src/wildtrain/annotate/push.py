"""`wildtrain annotate push SOURCE --n N`: the N images worth a review, into a Label Studio project, with the
champion's boxes as pre-annotations tagged with its registry version.

Images are not uploaded: Label Studio shows them through local-files storage (LOCAL_FILES_DOCUMENT_ROOT, which
`make labelstudio` sets to the project root). Images of an archive, or outside the document root, are hard-linked
(copied where links are impossible) under `.labelstudio/files/<project id>/` first. Images the project already
holds are not pushed again. A detector's boxes become rectangles; a segmenter's class map becomes polygons
(annotate/polygons.py says why not brushes). The server and its key are checked before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

from wildtrain.annotate import polygons, select
from wildtrain.annotate.client import Client
from wildtrain.errors import WildtrainError

FROM, TO = "label", "image"  # the labelling config's control and object names (pull reads them back)


CONTROLS = {"object-detection": "RectangleLabels", "semantic-segmentation": "PolygonLabels"}  # by the model's task


def label_config(classes: list[str], control: str = "RectangleLabels") -> str:
    labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Image name="{TO}" value="$image" zoom="true"/>\n'
            f'  <{control} name="{FROM}" toName="{TO}">\n{labels}\n  </{control}>\n</View>')


def config_control(config: str) -> str | None:
    """The labelling config's control tag named FROM (RectangleLabels, PolygonLabels, ...)."""
    import xml.etree.ElementTree as ET

    try:
        return next((e.tag for e in ET.fromstring(config).iter() if e.get("name") == FROM), None)
    except ET.ParseError:
        return None


def config_labels(config: str) -> list[str]:
    import xml.etree.ElementTree as ET

    try:
        return [e.get("value") for e in ET.fromstring(config).iter("Label")]
    except ET.ParseError:
        return []


def rectangles(det, classes: list[str], width: int, height: int, conf: float) -> list[dict]:
    """The detector's boxes at >= conf as Label Studio rectangle results (percent of the image)."""
    out = []
    for k, (box, c, s) in enumerate(zip(det.boxes, det.classes, det.scores)):
        if s < conf:
            continue
        x, y, w, h = (float(v) for v in box)
        out.append({"id": f"wt{k}", "type": "rectanglelabels", "from_name": FROM, "to_name": TO,
                    "original_width": width, "original_height": height, "image_rotation": 0, "score": float(s),
                    "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width,
                              "height": 100 * h / height, "rotation": 0, "rectanglelabels": [classes[c]]}})
    return out


def guesses(predictor, arrays: list, options: dict, masks: bool) -> tuple[list, list[list[float]]]:
    """The model's output per image (Detections, or a segmenter's Segmentation) and the scores its doubt is summed
    over: the boxes' scores, or each predicted blob's mean class probability (one pass at the image's size)."""
    got = predictor.predict(arrays, **options)
    if not masks:
        return got, [d.scores for d in got]
    probs = predictor.probabilities(arrays)
    return got, [polygons.blob_scores(s.mask, pr) for s, pr in zip(got, probs)]


def document_root(root: Path) -> Path:
    """Where the server serves local files from: LOCAL_FILES_DOCUMENT_ROOT as given to it, else the project root."""
    given = os.environ.get("LOCAL_FILES_DOCUMENT_ROOT")
    return Path(given).resolve() if given else root.resolve()


def project_for(client: Client, title: str, classes: list[str], model: str, control: str = "RectangleLabels"
                ) -> dict:
    """The project titled `title`, created with the model's classes; an existing one gains classes it lacks. A
    project that labels with another control (boxes vs polygons) is refused: its tasks would not compare."""
    project = client.project(title)
    if project is None:
        return client.create_project(title, label_config(classes, control), f"wildtrain annotation loop; "
                                                                            f"pre-annotations by {model}")
    config = project.get("label_config") or ""
    if (have_control := config_control(config)) not in (None, control):
        raise WildtrainError(f"Label Studio project '{title}' (id {project['id']}) labels with {have_control}; "
                             f"{model} pre-annotates {control}: name another project with --project")
    have = config_labels(config)
    if not set(classes) <= set(have):
        project = client.update_project(project["id"], label_config=label_config(
            have + [c for c in classes if c not in have], control))
    return project


def served_path(path: Path, docs: Path, staging: Path, name: str) -> Path:
    """The image's path under the document root: where it is, or a hard link in `staging`."""
    from wildtrain.io import link_or_copy

    real = path.resolve()
    if real.is_relative_to(docs) and real.parent != docs:
        return real
    target = staging / name
    if not target.is_file():
        link_or_copy(real, target)
    return target.resolve()


def push(p, root: Path, source: str, n: int, strategy: str = "uncertainty", model: str | None = None,
         project: str | None = None, seed: int = 0, conf: float | None = None) -> dict:
    from urllib.parse import quote

    from wildtrain import families
    from wildtrain.env import tracking_uri
    from wildtrain.pipeline.predict import model_cache
    from wildtrain.prediction import sources
    from wildtrain.registry import resolve_model

    if conf is not None and not 0 <= conf < 1:
        raise WildtrainError(f"--conf {conf:g}: a score threshold in [0, 1)")
    if strategy not in select.STRATEGIES:
        raise WildtrainError(f"--strategy {strategy}: use one of {', '.join(select.STRATEGIES)}")
    if n < 1:
        raise WildtrainError(f"--n {n}: push at least 1 image")
    if not Path(source).exists():
        raise WildtrainError(f"{source}: no such file or folder")
    client = Client.from_env()
    client.whoami()  # the server answers and takes the key, before anything is read or written
    docs = document_root(root)
    uri = tracking_uri(root)
    ref = resolve_model(model, [p.two_stage.model_name, p.register.model_name], model_cache(p, root, uri), uri)
    predictor = families.load(ref.folder, p.predict.device)
    card = predictor.card
    if card.task not in CONTROLS:
        raise WildtrainError(f"annotate push: {ref.describe()} is a {card.family} model ({card.task}); push takes a "
                             f"detector, the two-stage model (boxes) or a segmenter (polygons) as pre-annotations")
    masks = card.task == "semantic-segmentation"
    # a segmenter's class 0 is the background, which nobody draws
    labels = list(card.class_names)[1:] if masks else list(card.class_names)
    version = f"{ref.name}/{ref.version}" if ref.name else f"folder:{ref.folder.name}"
    title = project or f"wildtrain {ref.name or ref.folder.name}"
    lp = project_for(client, title, labels, version, CONTROLS[card.task])
    held = {(t.get("data") or {}).get("image") for t in client.tasks(lp["id"])}
    staging = root / ".labelstudio" / "files" / str(lp["id"])
    options = {k: v for k, v in p.predict.__dict__.items() if k in predictor.options()}
    conf = float(options.get("conf", 0.25)) if conf is None else float(conf)
    if not masks:
        options["conf"] = min(conf, select.FLOOR)

    with sources.items(Path(source)) as todo:
        if not todo:
            raise WildtrainError(f"no images found in {source} (looked for {', '.join(sources.IMAGE_SUFFIXES)})")
        candidates = []  # (item, served path, url)
        for item in todo:
            inside = item.path.resolve().is_relative_to(docs) and item.path.resolve().parent != docs
            rel = item.path.resolve().relative_to(docs) if inside else (staging / item.name).relative_to(docs) \
                if staging.resolve().is_relative_to(docs) else None
            if rel is None:
                raise WildtrainError(f"{source}: lies outside Label Studio's document root {docs} and so does "
                                     f"{staging}; set LOCAL_FILES_DOCUMENT_ROOT to a folder above both (when "
                                     f"starting the server, and here)")
            url = f"/data/local-files/?d={quote(rel.as_posix())}"
            if url not in held:
                candidates.append((item, url))
        if not candidates:
            raise WildtrainError(f"project '{title}' (id {lp['id']}) already holds every image of {source}")
        images, dets, scores, feats, available = [], [], [], [], len(candidates)
        if strategy == "random":
            candidates = [candidates[k] for k in select.by_chance(len(candidates), n, seed)]
        for start in range(0, len(candidates), 8):
            chunk = candidates[start:start + 8]
            arrays = [sources.read(item)[0] for item, _ in chunk]
            if strategy == "diverse":
                feats += [select.features(a) for a in arrays]
            else:
                got, doubt = guesses(predictor, arrays, options, masks)
                dets, scores = dets + got, scores + doubt
            images += [(a.shape[1], a.shape[0]) for a in arrays]
        if strategy == "uncertainty":
            picked = select.by_uncertainty(scores, n)
            if not any(scores):  # no box (no blob) in any image: nothing to rank
                found = "no animal" if masks else f"nothing at score >= {select.FLOOR:g}"
                print(f"annotate push: note: {version} finds {found} in any of the {len(scores)} images, so "
                      f"uncertainty cannot rank them: these are the first {len(picked)} in the source's order; "
                      f"--strategy diverse or random spreads them")
        elif strategy == "diverse":
            picked = select.by_diversity(feats, n)
            chosen = [candidates[k] for k in picked]
            got, doubt = guesses(predictor, [sources.read(item)[0] for item, _ in chosen], options, masks)
            dets, scores = dict(zip(picked, got)), dict(zip(picked, doubt))
        else:
            picked = list(range(len(candidates)))
        tasks, boxes, doubts, folders = [], 0, [], set()
        for k in picked:
            item, url = candidates[k]
            width, height = images[k]
            folders.add(str(served_path(item.path, docs, staging, item.name).parent))
            result = polygons.results(dets[k].mask, list(card.class_names), FROM, TO) if masks else \
                rectangles(dets[k], list(card.class_names), width, height, conf)
            boxes += len(result)
            doubts.append(select.doubt(scores[k]))
            tasks.append({"data": {"image": url, "source_name": item.name},
                          "predictions": [{"model_version": version, "score": round(doubts[-1], 4),
                                           "result": result}]})
    have = [s.get("path") for s in client.local_storages(lp["id"])]
    for folder in sorted(folders):
        if not any(h and (folder + "/").startswith(h.rstrip("/") + "/") for h in have):
            client.add_local_storage(lp["id"], folder, f"wildtrain: {Path(folder).name}")
            have.append(folder)
    client.import_tasks(lp["id"], tasks)
    out = {"project": title, "project_id": lp["id"], "url": f"{client.url}/projects/{lp['id']}/data",
           "images": len(tasks), "candidates": available, "strategy": strategy, "model_version": version,
           "pre_annotations": boxes, "doubt": [round(d, 3) for d in doubts]}
    what = f"{boxes} polygons" if masks else f"{boxes} boxes"
    print(f"annotate push: {len(tasks)} of {available} new images of {source} (strategy {strategy}) -> "
          f"Label Studio project '{title}' (id {lp['id']}), {what} pre-annotated by {version}"
          f"{'' if masks else f' (score >= {conf:g})'}; review at {out['url']}")
    return out
