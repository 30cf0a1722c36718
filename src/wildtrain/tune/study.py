"""The Optuna study on its storage: open or resume it, fail trials whose worker died, claim trials exactly.

Several workers share one storage, on one machine or many. A trial is claimed (counted and asked) under a lock
that the storage itself holds, so workers anywhere never run more than `n_trials` between them; RUNNING trials
count as claimed:
- PostgreSQL: a session-level advisory lock (the server drops it if the worker's connection dies);
- MySQL: GET_LOCK, likewise;
- sqlite (one machine only: it corrupts on shared file systems): a file lock beside the database file;
- JournalStorage on a file (`journal:PATH`, clusters without a database): Optuna's own lock file beside the
  journal, which works on NFS.
Each trial records its worker's host and pid, so a rerun can tell a trial whose worker was killed
(SIGKILL, power loss) from one still running elsewhere, and mark only the former failed.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import socket
import warnings
import zlib
from pathlib import Path
from typing import Iterator

from wildtrain.errors import WildtrainError
from wildtrain.processes import alive
from wildtrain.params import Tune

FINISHED = ("COMPLETE", "PRUNED")  # what counts toward n_trials; FAIL trials are kept but do not count
CLAIMED = (*FINISHED, "RUNNING")  # WAITING (enqueued) trials are not claimed until asked
PARENT_RUN_ATTR = "mlflow_parent_run_id"
JOURNAL = "journal:"  # tune.storage `journal:PATH`: Optuna's JournalStorage on a file (no database needed)
HEARTBEAT = "WILDTRAIN_TUNE_HEARTBEAT"  # seconds between a running trial's heartbeats (RDB storages; default 30)


class StorageDown(WildtrainError):
    """The study's storage stopped answering: the worker stops; a rerun resumes the study."""


def storage_url(url: str, root: Path) -> str:
    """A relative sqlite or journal path is taken from the repo root, not from wherever the command runs."""
    for prefix in ("sqlite:///", JOURNAL):
        rest = url[len(prefix):]
        if url.startswith(prefix) and rest and not rest.startswith("/") and rest != ":memory:":
            return prefix + str(root / rest)
    return url


def redact(url: str) -> str:
    """The URL without its password, for logs and metrics/tune.json."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def storage_error(e: BaseException) -> bool:
    """Whether `e` (or what caused it) says the storage is unreachable rather than that a trial went wrong."""
    from sqlalchemy.exc import DBAPIError

    import optuna

    while e is not None:
        if isinstance(e, (DBAPIError, optuna.exceptions.StorageInternalError)):
            return True
        e = e.__cause__ or e.__context__
    return False


def storage_down(url: str, e: BaseException) -> StorageDown:
    text = " ".join(str(getattr(e, "orig", None) or e).split())[:200] or type(e).__name__
    return StorageDown(f"tune.storage: '{redact(url)}' stopped answering ({text}); rerun `wildtrain tune` once it "
                       f"is back: trials cut short are marked failed and the study resumes to n_trials")


def open_storage(url: str):
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise WildtrainError(f"tune.storage: cannot open journal '{path}' ({e.strerror or e})") from None
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    beat = max(1, int(os.environ.get(HEARTBEAT) or 30))
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5: one warning per open, noise
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # heartbeats: a trial whose worker died on any machine is failed after 4 missed beats (fail_stale)
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=beat,
                                              grace_period=4 * beat)
    except Exception as e:  # bad URL, missing driver, unreachable server
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WildtrainError(f"tune.storage: cannot open '{redact(url)}' ({msg})") from None


def sampler(t: Tune, worker: int):
    """Seeded per worker: two workers with one seed would propose the same first trials."""
    import optuna

    seed = t.seed + worker
    return optuna.samplers.TPESampler(seed=seed) if t.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)


def pruner(t: Tune, train):
    """`train`: the tuned section's params (train, classifier or segmenter); hyperband's budget is its epochs."""
    import optuna

    if t.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=t.prune_startup_trials,
                                           n_warmup_steps=t.prune_warmup_epochs)
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(train.epochs, 1))
    return optuna.pruners.NopPruner()


def open_study(t: Tune, train, root: Path, worker: int = 0, create: bool = False):
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


def fail_dead_trials(study) -> list[int]:
    """RUNNING trials whose worker on this host is gone -> FAIL (kept in the study, with the reason)."""
    from optuna.trial import TrialState

    host, failed = socket.gethostname(), []
    storage = study._storage
    for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = tr.user_attrs.get("worker_pid")
        if tr.user_attrs.get("worker_host") != host or not isinstance(pid, int) or alive(pid):
            continue
        # FrozenTrial has no public id; the storage API needs it.
        storage.set_trial_user_attr(tr._trial_id, "error", f"interrupted: worker {host}:{pid} died")
        storage.set_trial_state_values(tr._trial_id, TrialState.FAIL)
        failed.append(tr.number)
    return failed


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _journal_lock(path: Path) -> Iterator[None]:
    from optuna.storages.journal import JournalFileOpenLock

    lock = JournalFileOpenLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _database_lock(url: str, study_name: str) -> Iterator[None]:
    """A lock the database server holds for this connection; a worker that dies loses it with its connection."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    key = zlib.crc32(f"wildtrain-tune:{study_name}".encode())  # the same key on every machine
    postgres = engine.dialect.name == "postgresql"
    take = "SELECT pg_advisory_lock(:k)" if postgres else "SELECT GET_LOCK(:k, -1)"
    give = "SELECT pg_advisory_unlock(:k)" if postgres else "SELECT RELEASE_LOCK(:k)"
    k = key if postgres else f"wildtrain-tune:{study_name}"
    try:
        with engine.connect() as con:
            con.execute(sqlalchemy.text(take), {"k": k})
            con.commit()
            try:
                yield
            finally:
                con.execute(sqlalchemy.text(give), {"k": k})
                con.commit()
    finally:
        engine.dispose()


def claim_lock(url: str, study_name: str):
    """The lock under which trials of `study_name` on the storage at `url` (resolved) are counted and asked."""
    if url.startswith(JOURNAL):
        return _journal_lock(Path(url[len(JOURNAL):] + f".{study_name}.claims.lock"))
    if url.startswith("sqlite:///"):
        return _file_lock(Path(url[len("sqlite:///"):] + f".{study_name}.claims.lock"))
    if url.split(":", 1)[0].split("+")[0] in ("postgresql", "mysql"):
        return _database_lock(url, study_name)
    raise WildtrainError(f"tune.storage: '{redact(url)}' has no lock to claim trials under; use postgresql://, "
                         f"mysql://, sqlite:/// (one machine) or journal:PATH")


@contextlib.contextmanager
def heartbeat(study, trial) -> Iterator[None]:
    """Record the trial's heartbeat from a thread while it runs (storages with heartbeats: RDB)."""
    import threading

    storage = study._storage  # the trial id and heartbeats are storage-level; Optuna has no study-level call
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception:  # noqa: BLE001 — a storage away: the trial itself will say so
                pass

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, name="wildtrain-trial-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale(study) -> list[int]:
    """RUNNING trials whose heartbeat stopped (their worker died, on any machine) -> FAIL; their numbers."""
    import optuna
    from optuna.trial import TrialState

    before = {tr.number for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    optuna.storages.fail_stale_trials(study)
    after = {tr.number for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - after)


def claim(study, n_trials: int, lock):
    """The next trial to run (enqueued ones first), or None once COMPLETE + PRUNED + RUNNING reach n_trials.

    `lock`: claim_lock(...) of the study's storage; counting and asking happen while it is held. Trials whose
    heartbeat stopped are failed first, so a worker that died on another machine does not hold a claim forever."""
    with lock:
        fail_stale(study)
        c = counts(study)
        if sum(c.get(s, 0) for s in CLAIMED) >= n_trials:
            return None
        with warnings.catch_warnings():  # we beat the heart ourselves (heartbeat()); Optuna warns outside optimize()
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            trial = study.ask()
        trial.set_user_attr("worker_host", socket.gethostname())
        trial.set_user_attr("worker_pid", os.getpid())
        return trial
