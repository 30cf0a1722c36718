"""A worker that shares nothing with the others but the storage URL: claims trials of a study exactly as `wildtrain
tune` does (wildtrain.tune.study.claim under claim_lock) and finishes each at once, COMPLETE or PRUNED.

usage: python claim_worker.py STORAGE_URL STUDY N_TRIALS WORKER"""

import sys

import optuna

from wildtrain.tune import study as study_mod

url, name, n_trials, worker = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=name, storage=study_mod.open_storage(url),
                          sampler=optuna.samplers.RandomSampler(seed=worker))
ran = 0
while (trial := study_mod.claim(study, n_trials, study_mod.claim_lock(url, name))) is not None:
    x = trial.suggest_float("x", 0, 1)
    if trial.number % 3 == 0:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, x)
    ran += 1
print(ran)
