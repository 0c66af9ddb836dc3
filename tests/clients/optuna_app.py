"""Optuna, a hyperparameter optimization framework that keeps its studies in PostgreSQL
(SQLAlchemy + Alembic), run unmodified against a server: `apps::optuna_upgrade_and_workload`.

    optuna_app.py legacy  HOST:PORT   (Optuna 2.10: makes the schema of 2021, runs a study)
    optuna_app.py workload HOST:PORT  (Optuna 5: after `optuna storage upgrade`)
    optuna_app.py summary HOST:PORT   (prints every study as JSON, then == OK)

Objectives are deterministic and samplers seeded, so two servers given the same calls hold the
same studies: the test compares the summaries of PostgreSQL and of a follower.
"""

import json
import math
import sys

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

mode, addr = sys.argv[1], sys.argv[2]
URL = f"postgresql+psycopg2://postgres@{addr}/postgres"


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    n = trial.suggest_int("n", 1, 5)
    kind = trial.suggest_categorical("kind", ["linear", "square"])
    trial.set_user_attr("tag", f"{kind}-{n}")
    y = (x - 2) if kind == "linear" else (x - 2) ** 2
    return -abs(y) + n


def legacy():
    study = optuna.create_study(
        study_name="legacy",
        storage=URL,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=7),
    )
    study.set_user_attr("owner", "team-a")
    study.optimize(objective, n_trials=8)
    assert len(study.trials) == 8, study.trials


def pruned(trial):
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    loss = 1.0
    for step in range(6):
        loss = loss * (1 - lr * 5) + 0.01 * step
        # Infinite and NaN intermediate values are stored through the value-type enums.
        if trial.number == 2 and step == 1:
            trial.report(float("inf"), step)
            continue
        if trial.number == 3 and step == 1:
            trial.report(float("nan"), step)
            continue
        trial.report(loss, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss


def workload():
    # The study made before the upgrade: what it holds survived, and it goes on.
    legacy = optuna.load_study(
        study_name="legacy", storage=URL, sampler=optuna.samplers.TPESampler(seed=11)
    )
    assert len(legacy.trials) == 8, len(legacy.trials)
    assert legacy.user_attrs == {"owner": "team-a"}, legacy.user_attrs
    legacy.optimize(objective, n_trials=4)
    best = legacy.best_trial
    assert best.value == max(t.value for t in legacy.trials), best

    # Pruning: intermediate values, some infinite or NaN, and pruned trials.
    s = optuna.create_study(
        study_name="pruning",
        storage=URL,
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    s.optimize(pruned, n_trials=10)
    states = {t.state for t in s.trials}
    assert optuna.trial.TrialState.COMPLETE in states, states

    # Two objectives, a failed trial, and ask/tell by hand, as a scheduler would.
    m = optuna.create_study(
        study_name="pareto",
        storage=URL,
        directions=["minimize", "maximize"],
        sampler=optuna.samplers.RandomSampler(seed=5),
    )
    for i in range(6):
        t = m.ask({"a": optuna.distributions.FloatDistribution(0, 1)})
        a = t.params["a"]
        if i == 4:
            m.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            m.tell(t, [a * a, math.sqrt(a)])
    assert len(m.best_trials) >= 1

    # A study made and deleted again.
    optuna.create_study(study_name="scratch", storage=URL)
    optuna.delete_study(study_name="scratch", storage=URL)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(URL))
    assert names == ["legacy", "pareto", "pruning"], names


def number(v):
    """A float as JSON can carry it (NaN and the infinities as strings)."""
    if v is None or math.isfinite(v):
        return v
    return repr(v)


def summary():
    out = []
    for s in sorted(optuna.get_all_study_summaries(URL), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=s.study_name, storage=URL)
        trials = []
        for t in study.get_trials(deepcopy=False):
            trials.append(
                {
                    "number": t.number,
                    "state": t.state.name,
                    "params": t.params,
                    "values": [number(v) for v in (t.values or [])],
                    "intermediate": {k: number(v) for k, v in sorted(t.intermediate_values.items())},
                    "user_attrs": t.user_attrs,
                    "finished": t.datetime_complete is not None,
                }
            )
        out.append(
            {
                "name": s.study_name,
                "directions": [d.name for d in study.directions],
                "user_attrs": study.user_attrs,
                "trials": trials,
            }
        )
    print(json.dumps(out, sort_keys=True))


{"legacy": legacy, "workload": workload, "summary": summary}[mode]()
print("== OK")
