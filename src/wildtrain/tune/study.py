"""The Optuna study on its storage: open or resume it, fail trials whose worker died, claim trials exactly.

Several worker processes share one storage. A trial is claimed (counted and asked) under a file lock, so
workers on one machine never run more than `n_trials` between them; RUNNING trials count as claimed.
Each trial records its worker's host and pid, so a rerun can tell a trial whose worker was killed
(SIGKILL, power loss) from one still running elsewhere, and mark only the former failed.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from wildtrain.errors import WildtrainError
from wildtrain.params import Train, Tune

FINISHED = ("COMPLETE", "PRUNED")  # what counts toward n_trials; FAIL trials are kept but do not count
CLAIMED = (*FINISHED, "RUNNING")  # WAITING (enqueued) trials are not claimed until asked
PARENT_RUN_ATTR = "mlflow_parent_run_id"


def storage_url(url: str, root: Path) -> str:
    """A relative sqlite path is taken from the repo root, not from wherever the command runs."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/") and url != prefix + ":memory:":
        return prefix + str(root / url[len(prefix):])
    return url


def redact(url: str) -> str:
    """The URL without its password, for logs and metrics/tune.json."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def open_storage(url: str):
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # bad URL, missing driver, unreachable server
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WildtrainError(f"tune.storage: cannot open '{redact(url)}' ({msg})") from None


def sampler(t: Tune, worker: int):
    """Seeded per worker: two workers with one seed would propose the same first trials."""
    import optuna

    seed = t.seed + worker
    return optuna.samplers.TPESampler(seed=seed) if t.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)


def pruner(t: Tune, train: Train):
    import optuna

    if t.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=t.prune_startup_trials,
                                           n_warmup_steps=t.prune_warmup_epochs)
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(train.epochs, 1))
    return optuna.pruners.NopPruner()


def open_study(t: Tune, train: Train, root: Path, worker: int = 0, create: bool = False):
    """Create (launcher) or load (workers) the study; an existing study must have the same direction."""
    import optuna

    storage = open_storage(storage_url(t.storage, root))
    kwargs = dict(study_name=t.study, storage=storage, sampler=sampler(t, worker), pruner=pruner(t, train))
    if create:
        study = optuna.create_study(direction=t.direction, load_if_exists=True, **kwargs)
        if study.direction.name.lower() != t.direction:
            raise WildtrainError(f"tune.direction: study '{t.study}' in the storage was created to "
                                 f"{study.direction.name.lower()}; use another tune.study name")
        return study
    return optuna.load_study(**kwargs)


def counts(study) -> dict[str, int]:
    return dict(collections.Counter(tr.state.name for tr in study.get_trials(deepcopy=False)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study) -> list[int]:
    """RUNNING trials whose worker on this host is gone -> FAIL (kept in the study, with the reason)."""
    from optuna.trial import TrialState

    host, failed = socket.gethostname(), []
    storage = study._storage
    for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = tr.user_attrs.get("worker_pid")
        if tr.user_attrs.get("worker_host") != host or not isinstance(pid, int) or _alive(pid):
            continue
        # FrozenTrial has no public id; the storage API needs it.
        storage.set_trial_user_attr(tr._trial_id, "error", f"interrupted: worker {host}:{pid} died")
        storage.set_trial_state_values(tr._trial_id, TrialState.FAIL)
        failed.append(tr.number)
    return failed


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def claim(study, n_trials: int, lock: Path):
    """The next trial to run (enqueued ones first), or None once COMPLETE + PRUNED + RUNNING reach n_trials."""
    with _locked(lock):
        c = counts(study)
        if sum(c.get(s, 0) for s in CLAIMED) >= n_trials:
            return None
        trial = study.ask()
        trial.set_user_attr("worker_host", socket.gethostname())
        trial.set_user_attr("worker_pid", os.getpid())
        return trial
