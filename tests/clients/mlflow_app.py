"""MLflow's tracking store and model registry, which keep experiments, runs, metrics and models
in PostgreSQL (SQLAlchemy + Alembic), run unmodified against a server:
`apps::mlflow_migrates_and_tracks_through_a_follower`.

    mlflow_app.py workload HOST:PORT  (the store's first use makes the schema: MLflow's initial
                                       tables, then its Alembic migrations to head; then runs)
    mlflow_app.py summary HOST:PORT   (prints experiments, runs and models as JSON, then == OK)

Everything the summary prints is decided by the calls (no ids drawn at random, no times), so two
servers given the same calls print the same: the test compares PostgreSQL's with a follower's.
"""

import json
import sys

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType

mode, addr = sys.argv[1], sys.argv[2]
URL = f"postgresql+psycopg2://postgres@{addr}/postgres"
client = MlflowClient(tracking_uri=URL, registry_uri=URL)


def workload():
    exp = client.create_experiment("churn", tags={"team": "growth"})
    client.set_experiment_tag(exp, "stage", "research")
    other = client.create_experiment("scratch")
    run_ids = {}
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        run = client.create_run(exp, run_name=f"lr-{lr}", tags={"model": "gbm"})
        rid = run.info.run_id
        run_ids[lr] = rid
        client.log_param(rid, "lr", str(lr))
        client.log_batch(
            rid,
            metrics=[Metric("loss", 1.0 / (step + 1) + lr, 1000 + step, step) for step in range(6)],
            params=[Param("depth", str(3 + i))],
            tags=[RunTag("seed", str(i))],
        )
        client.log_metric(rid, "auc", 0.7 + i / 10, timestamp=2000, step=0)
        client.set_terminated(rid, status="FINISHED" if i < 2 else "FAILED")
    # A run deleted and one restored; an experiment renamed and one deleted.
    doomed = client.create_run(exp, run_name="doomed").info.run_id
    client.delete_run(doomed)
    client.restore_run(run_ids[0.001])
    client.rename_experiment(other, "scratch-renamed")
    client.delete_experiment(other)

    # Searches as the UI sends them: filters on metrics, params and tags, ordering, paging.
    best = client.search_runs([exp], "metrics.loss < 0.5 and params.lr != '0.1'",
                              order_by=["metrics.auc DESC"])
    assert [r.info.run_name for r in best] == ["lr-0.001", "lr-0.01"], [r.info.run_name for r in best]
    page = client.search_runs([exp], "tags.model = 'gbm'", max_results=2, order_by=["attributes.run_name"])
    assert len(page) == 2 and page.token, page
    history = client.get_metric_history(run_ids[0.01], "loss")
    assert [m.step for m in history] == list(range(6)), history

    # The model registry: a model, versions from runs, aliases and tags.
    client.create_registered_model("churn-model", tags={"owner": "growth"},
                                   description="predicts churn")
    for lr in (0.1, 0.01):
        client.create_model_version("churn-model", f"runs:/{run_ids[lr]}/model",
                                    run_id=run_ids[lr], tags={"lr": str(lr)})
    client.set_registered_model_alias("churn-model", "champion", "2")
    client.update_model_version("churn-model", "1", description="first")
    assert str(client.get_model_version_by_alias("churn-model", "champion").version) == "2"


def summary():
    out = {"experiments": [], "models": []}
    for e in sorted(client.search_experiments(view_type=ViewType.ALL), key=lambda e: e.name):
        runs = client.search_runs([e.experiment_id], run_view_type=ViewType.ALL,
                                  order_by=["attributes.run_name"])
        out["experiments"].append({
            "id": e.experiment_id,
            "name": e.name,
            "stage": e.lifecycle_stage,
            "tags": {k: v for k, v in e.tags.items() if not k.startswith("mlflow.")},
            "runs": [{
                "name": r.info.run_name,
                "status": r.info.status,
                "stage": r.info.lifecycle_stage,
                "params": r.data.params,
                "metrics": r.data.metrics,
                "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
                "loss": [(m.step, m.value, m.timestamp)
                         for m in client.get_metric_history(r.info.run_id, "loss")],
            } for r in runs],
        })
    for m in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{m.name}'")
        out["models"].append({
            "name": m.name,
            "description": m.description,
            "tags": m.tags,
            "aliases": m.aliases,
            "versions": sorted((v.version, v.description, v.tags, v.status) for v in versions),
        })
    print(json.dumps(out, sort_keys=True))


{"workload": workload, "summary": summary}[mode]()
print("== OK")
