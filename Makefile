# wildtrain — `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Offline switches (see docs/explanation/offline-and-safety.md): nothing phones home during a run.
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/.ultralytics
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export NO_ALBUMENTATIONS_UPDATE := 1
export YOLO_AUTOINSTALL := False

.DEFAULT_GOAL := help
MMDET_MODEL ?= retinanet_r18

.PHONY: help setup repro exp predict serve publish data-add train-yolo train-mmdet train-classifier train-segmenter instances evaluate register replicates ci-rerun tune test test-fast dag metrics plots mlflow-ui services services-user services-down bench bench-data bench-data-add bench-classifier bench-stream bench-segmenter bench-predict bench-census bench-serve bench-team clean clean-all models docs labelstudio labelstudio-down

help: ## List targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}'

# uv installs the same pinned set as pip, 3-4x faster (parallel downloads, a shared cache), from wherever pip is
# configured to look (PIP_* variables or pip.conf: index, extra indexes, find-links, constraints), and like pip it
# takes each pinned version from whichever index has it (unsafe-best-match). If uv cannot be had or fails: pip.
UV_VERSION := 0.13.9
pip_setting = $${PIP_$(1):-$$($(VENV)/bin/python -m pip config get global.$(2) 2>/dev/null || true)}
$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q uv==$(UV_VERSION) && \
	  index="$(call pip_setting,INDEX_URL,index-url)" extra="$(call pip_setting,EXTRA_INDEX_URL,extra-index-url)" \
	  links="$(call pip_setting,FIND_LINKS,find-links)" constraint="$(call pip_setting,CONSTRAINT,constraint)" && \
	  echo "uv pip install -r requirements.txt" && \
	  $(VENV)/bin/python -m uv pip install -q --python $(VENV)/bin/python --compile-bytecode \
	    --index-strategy unsafe-best-match $${index:+--index-url "$$index"} \
	    $$(for u in $$extra; do printf -- '--extra-index-url %s ' "$$u"; done) \
	    $$(for l in $$links; do printf -- '--find-links %s ' "$$l"; done) \
	    $${constraint:+--constraint "$$constraint"} -r requirements.txt || \
	  { echo "uv unavailable or failed: pip install -r requirements.txt"; \
	    $(VENV)/bin/python -m pip install -q -r requirements.txt; }
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) ## Create .venv with pinned requirements and wildtrain installed (editable)

repro: $(STAMP) ## Run the whole pipeline: prepare -> convert -> detector, classifier, two-stage model, segmenter (train/evaluate/register)
	dvc repro

exp: $(STAMP) ## A DVC experiment with the project's tools, no venv to activate: make exp S="train.lr0=0.005 train.epochs=60"
	@test -n "$(S)" || { echo "error: give params to set: make exp S=\"train.lr0=0.005\"" >&2; exit 2; }
	dvc exp run $(foreach kv,$(S),-S $(kv))

OUT ?= predictions
predict: $(STAMP) ## Run the champion (two-stage, else detector) on your images: make predict SRC=folder|archive|image [OUT=dir] [MODEL=models:/NAME@ALIAS] [OVERWRITE=1] [DRAW=0]
	@test -n "$(SRC)" || { echo "error: give the images: make predict SRC=path/to/folder-or-archive [OUT=dir]" >&2; exit 2; }
	wildtrain predict "$(SRC)" --out "$(OUT)" $(if $(MODEL),--model "$(MODEL)") $(if $(filter 0,$(DRAW)),,--draw) $(if $(filter 1,$(OVERWRITE)),--overwrite)

SERVE_MODEL ?= models:/wildtrain-two-stage@champion
PORT ?= 5001
serve: $(STAMP) ## Serve a registered model over REST on 127.0.0.1 (PORT=5001, SERVE_MODEL=models:/NAME@ALIAS; POST /invocations)
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} mlflow models serve -m "$(SERVE_MODEL)" --env-manager local -h 127.0.0.1 -p $(PORT)

TO ?= stac
publish: $(STAMP) ## Write a model's publication (STAC item, .dlpk, ONNX, TorchScript, OpenVINO, card): make publish MODEL=models:/NAME@ALIAS|folder [TO=stac|dlpk|onnx|torchscript|openvino|card] [OUT=dir]
	@test -n "$(MODEL)" || { echo "error: give the model: make publish MODEL=models:/wildtrain-detector@champion TO=dlpk [OUT=dir]" >&2; exit 2; }
	wildtrain export --model "$(MODEL)" --to "$(TO)" --out "$(if $(filter command line,$(origin OUT)),$(OUT),publication)"

data-add: $(STAMP) ## Version a dataset with DVC as data/source/NAME and use it: make data-add SRC=path/to/folder-or-archive [NAME=name]
	@test -n "$(SRC)" || { echo "error: give the dataset: make data-add SRC=path/to/folder-or-archive [NAME=name]" >&2; exit 2; }
	wildtrain data add "$(SRC)" $(if $(NAME),--name "$(NAME)")

train-yolo: $(STAMP) ## Run the pipeline up to a trained YOLO model (prepare, convert, train)
	dvc repro train

train-mmdet: $(STAMP) ## Train an MMDetection model as a DVC experiment (MMDET_MODEL=retinanet_r18|faster_rcnn_r50|rtmdet_tiny|deformable_detr|dino)
	dvc exp run -S train.framework=mmdet -S train.mmdet.model=$(MMDET_MODEL) train

train-classifier: $(STAMP) ## Run the pipeline up to a trained species classifier on the ROI crops
	dvc repro train_classifier

train-segmenter: $(STAMP) ## Run the pipeline up to a trained semantic segmenter (U-Net) on the masks
	dvc repro train_segmenter

instances: $(STAMP) ## Off the default pipeline: train, evaluate and register the instance segmenter (YOLO-seg, params.yaml yoloseg*)
	dvc repro convert
	wildtrain train yoloseg
	wildtrain evaluate yoloseg
	wildtrain register yoloseg

evaluate: $(STAMP) ## Run up to the detector's evaluation (COCO mAP on the test split)
	dvc repro evaluate

register: $(STAMP) ## Run up to the detector's registration in the MLflow model registry
	dvc repro register

N ?= 3
replicates: $(STAMP) ## N training seeds of the params (+ S="k=v ...") as DVC experiments up to evaluate, mean/sd per metric (resumable): make replicates N=3 [S=..] [FAMILY="detector classifier"] [A="train.lr0=0.004" B="train.lr0=0.001": paired A-B]
	wildtrain replicates --n $(N) $(foreach kv,$(S),-S $(kv)) $(foreach f,$(FAMILY),-f $(f)) $(if $(or $(A),$(B)),--compare "$(A)" "$(B)")

ci-rerun: $(STAMP) ## What CI runs: pull, rerun only what changed since BASE, write reports/ci.md with noise bands: make ci-rerun BASE=origin/main [DRY=1: plan only] [PULL=0: recompute, no dvc pull]
	@test -n "$(BASE)" || { echo "error: give the base to compare with: make ci-rerun BASE=origin/main" >&2; exit 2; }
	wildtrain ci-rerun --base "$(BASE)" $(if $(filter 1,$(DRY)),--dry-run) $(if $(filter 0,$(PULL)),--no-pull)

WORKERS ?= 1
tune: $(STAMP) ## Optuna search over params.yaml tune.space (resumable; WORKERS=2 runs 2 processes on one storage)
	wildtrain tune --workers $(WORKERS)

TEST_WORKERS ?= 2
test: $(STAMP) ## Run all tests (unit + slow end-to-end), as CI does, in TEST_WORKERS=2 pytest-xdist workers
	python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-fast: $(STAMP) ## Run the fast unit tests only
	python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

docs: $(STAMP) ## Build the documentation site into site/ (mkdocs-material; the CLI and params references are generated from the code)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir site

.PHONY: deps
deps: $(STAMP) ## Regenerate dvc.yaml's code deps from the imports of each stage (tools/stage_deps.py)
	python tools/stage_deps.py

dag: $(STAMP) ## Show the pipeline DAG
	dvc dag

metrics: $(STAMP) ## Show metrics, and their diff against HEAD
	dvc metrics show
	dvc metrics diff

plots: $(STAMP) ## Render DVC plots to dvc_plots/index.html
	dvc plots show

# HOST only from the command line (`make services HOST=0.0.0.0`): zsh and others export HOST as the machine's name
SERVICES_HOST = $(if $(filter command line,$(origin HOST)),$(HOST))
services: $(STAMP) ## Team set-up: PostgreSQL + an authenticated mlflow server, in .services/ (PG_PORT=55432 MLFLOW_PORT=5050 [HOST=0.0.0.0: beyond loopback] [ARTIFACTS=s3://bucket/path])
	WILDTRAIN_SERVICES_HOST="$(SERVICES_HOST)" python -m wildtrain.services up

services-user: $(STAMP) ## Add a user of the team server: make services-user NAME=alice ROLE=wildtrain-maintainer|wildtrain-ci|wildtrain-ci-promote|wildtrain-reader
	@test -n "$(NAME)" -a -n "$(ROLE)" || { echo "error: give the user and role: make services-user NAME=alice ROLE=wildtrain-reader" >&2; exit 2; }
	WILDTRAIN_SERVICES_HOST="$(SERVICES_HOST)" python -m wildtrain.services user "$(NAME)" "$(ROLE)"

services-down: $(STAMP) ## Stop what `make services` started (data kept in .services/)
	python -m wildtrain.services down

# Label Studio in its own venv (pinned in requirements-labelstudio.txt), installed by uv when the project's venv has it
LS_VENV := .labelstudio/venv
LS_STAMP := $(LS_VENV)/.installed
$(LS_STAMP): requirements-labelstudio.txt | $(STAMP)
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(VENV)/bin/python -m uv pip install -q --python $(LS_VENV)/bin/python -r requirements-labelstudio.txt || \
	  $(LS_VENV)/bin/python -m pip install -q -r requirements-labelstudio.txt
	touch $(LS_STAMP)

labelstudio: $(STAMP) $(LS_STAMP) ## Label Studio for the annotation loop on 127.0.0.1 (LABEL_STUDIO_PORT=8080; data in .labelstudio/): prints LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY
	LABEL_STUDIO_PORT="$(LABEL_STUDIO_PORT)" python -m wildtrain.annotate.server up

labelstudio-down: $(STAMP) ## Stop what `make labelstudio` started (its database kept in .labelstudio/data)
	python -m wildtrain.annotate.server down

mlflow-ui: $(STAMP) ## Browse runs and the model registry at http://127.0.0.1:5000
	mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1

bench: $(STAMP) ## Benchmark: train-stage overhead vs plain Ultralytics (ratio)
	python benchmarks/train_overhead.py

bench-data: $(STAMP) ## Benchmarks: COCO->YOLO vs Ultralytics convert_coco; validation images/s on 1 vs all cores
	python benchmarks/coco_to_yolo.py
	python benchmarks/validate_images.py

bench-data-add: $(STAMP) ## Benchmark: wildtrain data add vs cp -r + dvc add on a generated 1 GB survey folder, then prepare on it
	python benchmarks/data_add_prepare.py

bench-classifier: $(STAMP) ## Benchmark: classifier DataModule + Lightning vs a bare PyTorch loop (images/s ratio)
	python benchmarks/classifier_throughput.py

bench-stream: $(STAMP) ## Benchmark: classifier training loader from files vs WebDataset shards (data.stream) at 1x and 10x a memory budget: peak RSS, images/s ratio
	python benchmarks/streaming.py

bench-segmenter: $(STAMP) ## Benchmarks: segmenter training vs a bare PyTorch loop (images/s); sliced masks of a 2300x2500 image
	python benchmarks/segmenter_throughput.py
	python benchmarks/sliced_masks.py

bench-predict: $(STAMP) ## Benchmark: wildtrain predict's sliced inference vs SAHI on 2300x2500 images (same boxes? time ratio)
	python benchmarks/sliced_vs_sahi.py --whole

bench-team: $(STAMP) ## Benchmarks: train stage on the PostgreSQL-backed MLflow server vs sqlite; Optuna trials/hour, 3 workers vs 1
	python benchmarks/tracking_server.py
	python benchmarks/tune_workers.py

bench-census: $(STAMP) ## Benchmark: predict on GeoTIFF mosaics of 4k, 16k and 32k px (1 gigapixel; minutes): max RSS and time, streamed vs in memory; sliced predict vs SAHI
	python benchmarks/census.py --sizes 4096 16384 32768 --sahi-size 4096

bench-serve: $(STAMP) ## Benchmark: mlflow models serve (base64 JPEG requests) vs a YOLO.predict loop (requests/s ratio)
	python benchmarks/serve_throughput.py

models: $(STAMP) ## List the registered models: versions, aliases, gate metric per version (MLFLOW_TRACKING_URI, else mlflow.db)
	wildtrain models

clean: ## Remove generated state (runs, stage outputs); keeps the MLflow registry (mlflow.db, mlruns/), .venv, data/source and the DVC cache
	rm -rf runs .ultralytics models models_classifier models_segmenter models_yoloseg dvc_plots data/raw data/coco data/yolo data/crops data/reports data/predictions data/predictions_two_stage data/predictions_yoloseg

clean-all: clean ## make clean, then delete the MLflow registry (every run and registered model) after a y/N prompt; YES=1 skips the prompt
	@if [ "$(YES)" = 1 ]; then answer=y; elif [ -t 0 ]; then \
	  read -r -p "Delete the MLflow registry: mlflow.db and mlruns/ (every run and registered model)? [y/N] " answer; \
	else answer=n; fi; \
	case "$$answer" in \
	  y|Y|yes|YES) rm -rf mlruns mlflow.db; echo "deleted mlflow.db and mlruns/";; \
	  *) echo "kept mlflow.db and mlruns/ (make clean-all YES=1 deletes them without asking)";; \
	esac
