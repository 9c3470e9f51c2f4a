"""Airflow DAGs for gladly-wfm: one nightly DAG per Gladly organisation, and a backfill that hands
the DAG run's date range to the binary as --from/--to.

The binary is the same container image as the Kubernetes CronJob; each task is one pod
(KubernetesPodOperator) with the organisation's pipeline file (ConfigMap) and secrets (Secret).
State and the run lock live in the s3:// root, so a retried or re-scheduled task resumes where
the last one stopped, and two tasks of one organisation never work at once (exit 3).

Backfill: trigger `gladly_wfm_<org>_backfill` with a conf of {"from": "2026-10-01", "to":
"2026-10-31"}, or run `airflow dags backfill -s 2026-10-01 -e 2026-10-31 gladly_wfm_<org>_backfill`
(then each DAG run covers its data interval, one day).
"""

from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

IMAGE = "registry.example.com/gladly-wfm:0.1.0"
ORGS = ["acme"]  # one ConfigMap + Secret named gladly-wfm-<org> each (deploy/kubernetes/)


def pod(org: str, task_id: str, args: list[str]) -> KubernetesPodOperator:
    return KubernetesPodOperator(
        task_id=task_id,
        name=f"gladly-wfm-{org}",
        image=IMAGE,
        arguments=args,
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=f"gladly-wfm-{org}"))],
        env_vars={"AWS_REGION": "us-east-1"},
        volumes=[k8s.V1Volume(name="pipeline", config_map=k8s.V1ConfigMapVolumeSource(name=f"gladly-wfm-{org}"))],
        volume_mounts=[k8s.V1VolumeMount(name="pipeline", mount_path="/etc/gladly-wfm", read_only=True)],
        get_logs=True,
        # Exit 1 resumes on retry; 2 (config), 3 (locked), 4 (credentials) need a person.
        retries=2,
        retry_delay=timedelta(minutes=10),
    )


PIPELINE = ["--pipeline", "/etc/gladly-wfm/pipeline.toml", "--log-format", "json"]

for org in ORGS:
    with DAG(
        dag_id=f"gladly_wfm_{org}_nightly",
        schedule="30 2 * * *",
        start_date=pendulum.datetime(2026, 11, 1, tz="America/New_York"),
        catchup=False,
        max_active_runs=1,
        tags=["gladly-wfm"],
    ) as nightly:
        # No dates: the binary plans from its state (every complete day after the last one).
        pod(org, "run", ["run", *PIPELINE])
    globals()[nightly.dag_id] = nightly

    with DAG(
        dag_id=f"gladly_wfm_{org}_backfill",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params={"from": None, "to": None},
        tags=["gladly-wfm", "backfill"],
    ) as backfill:
        # The conf's range if given, else the DAG run's data interval (inclusive last day).
        frm = "{{ params['from'] or data_interval_start | ds }}"
        to = "{{ params['to'] or (data_interval_end - macros.timedelta(days=1)) | ds }}"
        pod(org, "backfill", ["run", *PIPELINE, "--from", frm, "--to", to])
    globals()[backfill.dag_id] = backfill
