"""The inference function of wildtrain's Esri deep-learning packages (.dlpk): an ArcGIS Python raster function.

Copied into every .dlpk as `WildtrainInference.py` (its class has the file's name, as ArcGIS expects) beside the
.emd and the ONNX model(s). It needs numpy and onnxruntime only — not wildtrain, PyTorch or Ultralytics — so it
runs in ArcGIS Pro's deep-learning Python environment as it is. Everything model-specific (input size, resize,
normalization, how to read the output, class names, thresholds) is read from the .emd's `Wildtrain` section.

ArcGIS calls `initialize(model=<.emd path or JSON>, device=<id>)`, `getParameterInfo()`, `getConfiguration(**tool
parameters)`, then per tile: `vectorize(raster_pixels=(bands, H, W), raster_mask=...)` (Detect Objects:
ModelType ObjectDetection), `vectorize(rasters_pixels=[(bands, h, w), ...], rasters_mask=...)` (Classify Objects:
ObjectClassification, one chip per feature) or `updatePixels(tlc, shape, props, raster_pixels=...)` (Classify
Pixels: ClassifyPixels). Boxes and polygons are in the tile's pixel coordinates, as ArcGIS expects.

The decoding functions below (letterbox, decode_yolo) are also what wildtrain's parity check applies to both the
PyTorch model's and the exports' raw outputs, so the package decodes exactly what was checked.
"""

import json
import os

import numpy as np

PAD_VALUE = 114  # YOLO's letterbox border
GEOMETRY_POLYGON = 4  # ArcGIS GeometryType.Polygon
MAX_WH = 7680.0  # class offset for class-aware NMS in one pass (as Ultralytics)


# ------------------------------------------------------------------------------------------ pre/post-processing
def _resize(image, width, height):
    """Bilinear resize of an HxWxC uint8 array: OpenCV when present (what training used), else Pillow."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    try:
        import cv2

        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def letterbox(image, size):
    """HxWx3 -> size x size: the long side scaled to `size`, the aspect kept, centred on a 114 border.
    Returns the image and (gain, pad_x, pad_y) to map boxes back."""
    h, w = image.shape[:2]
    gain = min(size / h, size / w)
    new_w, new_h = int(round(w * gain)), int(round(h * gain))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    resized = _resize(image, new_w, new_h)
    out = np.full((new_h + top + bottom, new_w + left + right, image.shape[2]), PAD_VALUE, dtype=np.uint8)
    out[top:top + new_h, left:left + new_w] = resized
    return out, (gain, left, top)


def to_input(images, io):
    """RGB uint8 HxWx3 arrays -> the model's float32 [N, 3, size, size] batch, and per image how to map boxes back."""
    size, batch, maps = int(io["size"]), [], []
    for image in images:
        if io["resize"] == "letterbox":
            image, back = letterbox(image, size)
        else:
            h, w = image.shape[:2]
            image, back = _resize(image, size, size), (None, w / size, h / size)
        x = image.astype(np.float32) / 255.0
        if io.get("mean") is not None:
            x = (x - np.asarray(io["mean"], np.float32)) / np.asarray(io["std"], np.float32)
        batch.append(x.transpose(2, 0, 1))
        maps.append(back)
    return np.ascontiguousarray(np.stack(batch)).astype(np.float32), maps


def _iou_one(box, boxes):
    """IoU of one xyxy box with many."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def candidates(output, conf):
    """One image's raw YOLO head [4 + classes, anchors] -> anchor indices, boxes xyxy, scores, classes of the anchors
    whose best class scores above `conf`, by descending score (anchor index breaks ties)."""
    boxes, scores = output[:4].T.astype(np.float64), output[4:].T
    cls = scores.argmax(1)
    best = scores[np.arange(len(cls)), cls].astype(np.float64)
    keep = np.nonzero(best > conf)[0]
    keep = keep[np.lexsort((keep, -best[keep]))]
    cx, cy, w, h = boxes[keep].T
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) if len(keep) else np.zeros((0, 4))
    return keep, xyxy, best[keep], cls[keep]


def nms(xyxy, scores, classes, iou):
    """Greedy class-aware non-maximum suppression over boxes sorted by descending score: indices kept."""
    shifted = xyxy + (classes.astype(np.float64) * MAX_WH)[:, None]
    alive, kept = np.ones(len(xyxy), bool), []
    for i in range(len(xyxy)):
        if alive[i]:
            kept.append(i)
            alive[i + 1:] &= _iou_one(shifted[i], shifted[i + 1:]) <= iou
    return np.asarray(kept, dtype=int)


def decode_yolo(output, conf, iou, max_det, anchors=False):
    """Raw YOLO head [N, 4 + classes, anchors] -> per image (boxes xyxy in input px, scores, classes) after NMS:
    Ultralytics' non_max_suppression (single label per box, class-aware), in numpy. `anchors`: also the anchor
    index of each kept box."""
    out = []
    for one in output:
        idx, xyxy, scores, classes = candidates(one, conf)
        keep = nms(xyxy, scores, classes, iou)[:max_det]
        out.append((xyxy[keep], scores[keep], classes[keep]) + ((idx[keep],) if anchors else ()))
    return out


def unletterbox(xyxy, back, width, height):
    """Boxes in the letterboxed input -> the original image's pixels, clipped to it."""
    gain, left, top = back
    out = (xyxy - np.array([left, top, left, top], np.float64)) / gain
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def crop_box(box, width, height, padding, min_size):
    """The region a two-stage model classifies around an xyxy box: as wildtrain cut the classifier's training
    crops (padded by a fraction of the box, at least min_size, inside the image)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    half_w, half_h = max(w / 2 + w * padding, min_size / 2), max(h / 2 + h * padding, min_size / 2)
    left, top = max(0, int(np.floor(cx - half_w))), max(0, int(np.floor(cy - half_h)))
    right, bottom = min(width, int(np.ceil(cx + half_w))), min(height, int(np.ceil(cy + half_h)))
    return left, top, max(right, left + 1), max(bottom, top + 1)


# ------------------------------------------------------------------------------------------------ the models
class _Onnx:
    """One ONNX model and how to feed it."""

    def __init__(self, path, io, device):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device is not None and device >= 0 and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": int(device)}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, providers=providers)
        self.io = io
        self.input = self.session.get_inputs()[0].name
        fixed = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = fixed if isinstance(fixed, int) else None

    def run(self, images, batch_size=8):
        """Raw outputs for RGB uint8 arrays, and how each image was mapped into the input."""
        if not images:
            return None, []
        x, maps = to_input(images, self.io)
        step = self.fixed_batch or max(1, int(batch_size))
        outs = [self.session.run(None, {self.input: x[i:i + step]})[0] for i in range(0, len(x), step)]
        return np.concatenate(outs), maps


def _hwc(pixels, bands):
    """ArcGIS pixel block (bands, H, W), any dtype -> HxWx3 uint8 RGB (the .emd's DataRange already made it 0-255)."""
    block = np.asarray(pixels)
    if block.ndim == 2:
        block = block[None]
    block = block[:3] if block.shape[0] >= 3 else np.repeat(block[:1], 3, axis=0)
    return np.ascontiguousarray(np.clip(block, 0, 255).astype(np.uint8).transpose(1, 2, 0))


def _ring(x1, y1, x2, y2):
    """A box as a closed polygon ring of [x, y] pixel coordinates, clockwise (ArcGIS's outer ring order)."""
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]


class WildtrainInference:
    """The raster function ArcGIS runs for a wildtrain .dlpk (Detect Objects, Classify Objects, Classify Pixels)."""

    def __init__(self):
        self.name = "wildtrain"
        self.description = "Runs a wildtrain model (ONNX) on imagery: animals detected, objects or pixels classified"
        self.emd, self.spec, self.models = {}, {}, {}
        self.threshold, self.nms_iou, self.max_det, self.batch_size, self.padding = 0.25, 0.7, 300, 8, 0

    # ArcGIS: called first, with the .emd (a path, or its JSON text) and the device (-1: CPU)
    def initialize(self, **kwargs):
        if "model" not in kwargs:
            return
        model = kwargs["model"]
        if os.path.isfile(str(model)):
            with open(model, encoding="utf-8") as f:
                self.emd = json.load(f)
            folder = os.path.dirname(os.path.abspath(model))
        else:
            self.emd, folder = json.loads(model), os.getcwd()
        self.spec = self.emd["Wildtrain"]
        device = kwargs.get("device")
        device = None if device is None else int(device)
        self.models = {"main": _Onnx(os.path.join(folder, self.emd["ModelFile"]), self.spec["input"], device)}
        if "classifier" in self.spec:
            c = self.spec["classifier"]
            self.models["classifier"] = _Onnx(os.path.join(folder, c["ModelFile"]), c["input"], device)
        self.threshold = float(self.emd.get("Threshold", self.spec.get("conf", 0.25)))
        self.nms_iou, self.max_det = float(self.spec.get("iou", 0.7)), int(self.spec.get("max_det", 300))

    def getParameterInfo(self):
        kind = self.emd.get("ModelType", "ObjectDetection")
        first = {"name": "rasters", "dataType": "rasters", "required": True, "displayName": "Rasters",
                 "description": "The chips of the objects to classify"} if kind == "ObjectClassification" else \
            {"name": "raster", "dataType": "raster", "required": True, "displayName": "Raster",
             "description": "Input raster"}
        params = [first,
                  {"name": "model", "dataType": "string", "required": True, "displayName": "Input Model Definition "
                   "(EMD) File", "description": "Input model definition (EMD) JSON file"},
                  {"name": "device", "dataType": "numeric", "required": False, "displayName": "Device ID",
                   "description": "Device ID (-1: CPU)"},
                  {"name": "batch_size", "dataType": "numeric", "required": False, "value": 8,
                   "displayName": "Batch Size", "description": "Tiles or chips per forward pass"}]
        if kind == "ObjectDetection":
            params += [{"name": "threshold", "dataType": "numeric", "required": False, "value": self.threshold,
                        "displayName": "Confidence Score Threshold [0.0, 1.0]",
                        "description": "Boxes scoring below this are dropped"},
                       {"name": "nms_overlap", "dataType": "numeric", "required": False, "value": self.nms_iou,
                        "displayName": "NMS Overlap (IoU)",
                        "description": "Same-class boxes overlapping more are merged"},
                       {"name": "max_detections", "dataType": "numeric", "required": False, "value": self.max_det,
                        "displayName": "Max Detections per Tile", "description": "Most boxes kept per tile"}]
        if kind != "ObjectClassification":
            params.append({"name": "padding", "dataType": "numeric", "required": False, "value": 0,
                           "displayName": "Padding", "description": "Pixels of overlap around each tile"})
        return params

    def getConfiguration(self, **scalars):
        self.threshold = float(scalars.get("threshold", self.threshold))
        self.nms_iou = float(scalars.get("nms_overlap", self.nms_iou))
        self.max_det = int(scalars.get("max_detections", self.max_det))
        self.batch_size = int(scalars.get("batch_size", self.batch_size))
        self.padding = int(scalars.get("padding", self.padding))
        config = {"extractBands": tuple(self.emd.get("ExtractBands", [0, 1, 2])), "padding": self.padding,
                  "batch_size": self.batch_size, "inheritProperties": 2 | 4 | 8, "inputMask": True,
                  "tx": int(self.emd["ImageWidth"]) - 2 * self.padding,
                  "ty": int(self.emd["ImageHeight"]) - 2 * self.padding}
        if "DataRange" in self.emd:
            config["dataRange"] = tuple(self.emd["DataRange"])
        return config

    def getFields(self):
        fields = [{"name": "OID", "type": "esriFieldTypeOID", "alias": "OID"},
                  {"name": "Class", "type": "esriFieldTypeString", "alias": "Class"},
                  {"name": "Confidence", "type": "esriFieldTypeDouble", "alias": "Confidence"},
                  {"name": "Shape", "type": "esriFieldTypeGeometry", "alias": "Shape"}]
        if self.emd.get("ModelType") == "ObjectClassification":
            fields.insert(2, {"name": "Label", "type": "esriFieldTypeString", "alias": "Label"})
        return json.dumps({"fields": fields})

    def getGeometryType(self):
        return GEOMETRY_POLYGON

    # ------------------------------------------------------------------------------------------- per tile
    def detect(self, image):
        """One RGB uint8 HxWx3 array -> [(x1, y1, x2, y2), class index, score] in its pixels (the two-stage model:
        relabelled by the classifier, background dropped)."""
        out, maps = self.models["main"].run([image], self.batch_size)
        xyxy, scores, classes = decode_yolo(out, self.threshold, self.nms_iou, self.max_det)[0]
        xyxy = unletterbox(xyxy, maps[0], image.shape[1], image.shape[0])
        found = [(tuple(float(v) for v in b), int(c), float(s)) for b, c, s in zip(xyxy, classes, scores)]
        if "classifier" not in self.spec or not found:
            return found
        c = self.spec["classifier"]
        h, w = image.shape[:2]
        crops = []
        for box, _, _ in found:
            left, top, right, bottom = crop_box(box, w, h, c["padding"], c["min_size"])
            crops.append(image[top:bottom, left:right])
        logits, _ = self.models["classifier"].run(crops, self.batch_size)
        kept = []
        for (box, _, score), probs in zip(found, softmax(logits.astype(np.float64))):
            label = int(probs.argmax())
            species = c["species"][label]  # classifier class -> detector class (-1: background, dropped)
            if species >= 0:
                kept.append((box, species, score * float(probs[label])))
        return sorted(kept, key=lambda k: -k[2])

    def classify(self, images):
        """RGB chips -> (class index, probability) each."""
        logits, _ = self.models["main"].run(images, self.batch_size)
        probs = softmax(logits.astype(np.float64))
        return [(int(p.argmax()), float(p.max())) for p in probs]

    def vectorize(self, **pixelBlocks):
        names = self.spec["class_names"]
        features = []
        if self.emd.get("ModelType") == "ObjectClassification":
            chips = [_hwc(p, 3) for p in pixelBlocks["rasters_pixels"]]
            for i, (chip, (label, prob)) in enumerate(zip(chips, self.classify(chips) if chips else [])):
                h, w = chip.shape[:2]
                features.append({"attributes": {"OID": i + 1, "Class": names[label], "Label": names[label],
                                                "Confidence": prob},
                                 "geometry": {"rings": [_ring(0, 0, w, h)]}})
        else:
            image = _hwc(pixelBlocks["raster_pixels"], 3)
            mask = pixelBlocks.get("raster_mask")
            if mask is not None:  # pixels outside the raster's valid area are set to 0, as Esri's functions do
                image = image * (np.asarray(mask).reshape(-1, *image.shape[:2])[0] > 0)[..., None].astype(np.uint8)
            for i, (box, cls, score) in enumerate(self.detect(image)):
                features.append({"attributes": {"OID": i + 1, "Class": names[cls], "Confidence": score},
                                 "geometry": {"rings": [_ring(*box)]}})
        fields = json.loads(self.getFields())["fields"]
        return {"output_vectors": json.dumps({"displayFieldName": "", "geometryType": "esriGeometryPolygon",
                                              "fieldAliases": {f["name"]: f["alias"] for f in fields},
                                              "fields": fields, "features": features})}

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        """Classify Pixels: the class value (index + 1, as in the .emd's Classes) of each pixel; 0 where masked."""
        image = _hwc(pixelBlocks["raster_pixels"], 3)
        logits, _ = self.models["main"].run([image], self.batch_size)
        h, w = image.shape[:2]
        classes = logits[0].argmax(0).astype(np.uint8) + 1
        if classes.shape != (h, w):  # the model's size -> the tile's (nearest: class values must not blend)
            ys = (np.arange(h) * classes.shape[0] // h).clip(0, classes.shape[0] - 1)
            xs = (np.arange(w) * classes.shape[1] // w).clip(0, classes.shape[1] - 1)
            classes = classes[ys][:, xs]
        mask = pixelBlocks.get("raster_mask")
        if mask is not None:
            classes = classes * (np.asarray(mask).reshape(-1, h, w)[0] > 0)
        pixel_type = props.get("pixelType", "u1") if isinstance(props, dict) else "u1"
        pixelBlocks["output_pixels"] = classes[None].astype(pixel_type, copy=False)
        return pixelBlocks
