"""Checks of the deployment files that the validators cannot make.

kubernetes-validate checks the shape of the manifests and checkov a set of
security rules, but neither knows what capbill needs: which exit codes a retry
can fix, where the config is mounted, which paths must be writable. These
tests pin those values, for the nightly billing run (`capbill run`) and the
hourly collection (`capbill collect`), and check that the two jobs share their
configuration, credentials and security settings. Run them with
scripts/validate-deploy.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
SYSTEMD = ROOT / "deploy" / "systemd"
CRONTAB = ROOT / "deploy" / "cron" / "capbill.crontab"
DOCKERFILE = ROOT / "Dockerfile"

# capbill's exit codes (README.md, deploy/README.md).
NO_RETRY = {1, 2, 5}  # a bug, invalid input or config, reprocess refused
RETRY = {3, 4}  # storage or network failure, the month's lock is held
# `capbill collect` exits with 0 to 3 only.
COLLECT_NO_RETRY = {1, 2}  # a bug; no source, endpoint or token, token refused, no such metric, bad mapping
COLLECT_RETRY = {3}  # source unreachable or 5xx, malformed answer, storage failure

# The CronJobs of `kubectl apply -f deploy/kubernetes/`, by name, with their
# app.kubernetes.io/component label.
NIGHTLY, COLLECT = "capbill", "capbill-collect"
COMPONENTS = {NIGHTLY: "nightly-billing", COLLECT: "hourly-collect"}

# The Secret the collection source's admin token comes from, and its key.
COLLECT_TOKEN_SECRET = "capbill-collect-token"
COLLECT_TOKEN = "CAPBILL_COLLECT_TOKEN"

# Environment variables that carry credentials: never a literal value.
CREDENTIAL_VARS = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "CAPBILL_S3_ACCESS_KEY_ID",
    "CAPBILL_S3_SECRET_ACCESS_KEY",
    COLLECT_TOKEN,
}


# --- loading -----------------------------------------------------------------


def load_documents(paths):
    docs = []
    for path in paths:
        with path.open(encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((path, doc))
    return docs


@pytest.fixture(scope="module")
def applied():
    """What `kubectl apply -f deploy/kubernetes/` applies (not recursive)."""
    return load_documents(sorted(K8S.glob("*.yaml")))


@pytest.fixture(scope="module")
def everything():
    """Every manifest, the examples included."""
    return load_documents(sorted(K8S.rglob("*.yaml")))


def only(docs, kind, name=None):
    found = [d for _, d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def job_of(cronjob):
    return cronjob["spec"]["jobTemplate"]["spec"]


def pod_of(cronjob):
    return job_of(cronjob)["template"]["spec"]


def container_of(cronjob):
    containers = {c["name"]: c for c in pod_of(cronjob)["containers"]}
    assert "capbill" in containers, "the podFailurePolicy rules name the container capbill"
    return containers["capbill"]


# The nightly billing run (30-cronjob.yaml).


@pytest.fixture(scope="module")
def cronjob(applied):
    return only(applied, "CronJob", NIGHTLY)


@pytest.fixture(scope="module")
def job(cronjob):
    return job_of(cronjob)


@pytest.fixture(scope="module")
def pod(cronjob):
    return pod_of(cronjob)


@pytest.fixture(scope="module")
def container(cronjob):
    return container_of(cronjob)


# The hourly collection (31-collect-cronjob.yaml).


@pytest.fixture(scope="module")
def collect_cronjob(applied):
    return only(applied, "CronJob", COLLECT)


@pytest.fixture(scope="module")
def collect_job(collect_cronjob):
    return job_of(collect_cronjob)


@pytest.fixture(scope="module")
def collect_pod(collect_cronjob):
    return pod_of(collect_cronjob)


@pytest.fixture(scope="module")
def collect_container(collect_cronjob):
    return container_of(collect_cronjob)


# Either CronJob: the checks both must pass run once for each.


@pytest.fixture(scope="module", params=[NIGHTLY, COLLECT])
def any_cronjob(request, applied):
    return only(applied, "CronJob", request.param)


@pytest.fixture(scope="module")
def any_job(any_cronjob):
    return job_of(any_cronjob)


@pytest.fixture(scope="module")
def any_pod(any_cronjob):
    return pod_of(any_cronjob)


@pytest.fixture(scope="module")
def any_container(any_cronjob):
    return container_of(any_cronjob)


def argv(container):
    return list(container.get("command", [])) + list(container.get("args", []))


def option(args, flag):
    assert args.count(flag) == 1, f"{flag} must be given exactly once in {args}"
    return args[args.index(flag) + 1]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def mounts_by_volume(container):
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def volume(pod, name):
    found = [v for v in pod.get("volumes", []) if v["name"] == name]
    assert len(found) == 1, f"volume {name}"
    return found[0]


def under(path, directory):
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def writable_dirs(pod, container):
    """Mount paths the container can write to (its root file system is read-only)."""
    dirs = []
    for mount in container.get("volumeMounts", []):
        vol = volume(pod, mount["name"])
        if "emptyDir" in vol and not mount.get("readOnly", False):
            dirs.append(mount["mountPath"])
    return dirs


def parse_quantity(value):
    """A Kubernetes quantity ("500m", "2", "1Gi", "512M") as a float."""
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value))
    assert m, f"cannot read quantity {value!r}"
    factor = {
        None: 1,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }[m.group(2)]
    return float(m.group(1)) * factor


# --- the CronJob ---------------------------------------------------------------


def test_runs_nightly_at_0230_utc_one_at_a_time(cronjob):
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 2 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec.get("suspend", False) is False


def test_missed_starts_and_history_are_bounded(cronjob):
    spec = cronjob["spec"]
    assert isinstance(spec["startingDeadlineSeconds"], int) and 0 < spec["startingDeadlineSeconds"] <= 6 * 3600
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1


def test_job_retries_and_ends(job):
    assert job["backoffLimit"] == 6
    # Ends well before the next night's start, which Forbid would otherwise skip.
    assert isinstance(job["activeDeadlineSeconds"], int) and 0 < job["activeDeadlineSeconds"] <= 12 * 3600
    assert isinstance(job["ttlSecondsAfterFinished"], int) and job["ttlSecondsAfterFinished"] >= 24 * 3600


def test_a_killed_pods_lock_expires_while_the_job_can_still_retry(applied, job):
    # The lock is renewed every third of its TTL while a run goes: the TTL only
    # bounds how long a killed pod blocks the next try, which must come before
    # the Job's deadline, and must leave room for the renewal.
    config = tomllib.loads(only(applied, "ConfigMap", "capbill-config")["data"]["capbill.toml"])
    lock_ttl_minutes = config.get("operations", {}).get("lock_ttl_minutes", 10)
    assert 3 <= lock_ttl_minutes <= 30
    assert lock_ttl_minutes * 60 < job["activeDeadlineSeconds"]
    # A pod killed outright (OOM, node failure) leaves its lock until the TTL;
    # the retries (exit 4 until then) must still go on after it: the Job
    # controller waits 10 s, doubled each time, at most 6 minutes.
    waits = [min(10 * 2**i, 360) for i in range(job["backoffLimit"])]
    assert sum(waits) > lock_ttl_minutes * 60, (waits, lock_ttl_minutes)


def exit_code_rules(job, action):
    codes = set()
    for rule in job["podFailurePolicy"]["rules"]:
        if rule["action"] == action and "onExitCodes" in rule:
            on = rule["onExitCodes"]
            assert on["containerName"] == "capbill"
            assert on["operator"] == "In"
            codes |= set(on["values"])
    return codes


def test_pod_failure_policy_fails_at_once_where_a_retry_cannot_help(job):
    assert exit_code_rules(job, "FailJob") == NO_RETRY


def test_pod_failure_policy_counts_retryable_failures(job):
    assert exit_code_rules(job, "Count") == RETRY
    assert exit_code_rules(job, "Ignore") == set()


def test_pod_failure_policy_ignores_disruptions_first(any_job):
    rules = any_job["podFailurePolicy"]["rules"]
    first = rules[0]
    assert first["action"] == "Ignore"
    assert [c["type"] for c in first["onPodConditions"]] == ["DisruptionTarget"]
    assert all(c.get("status", "True") == "True" for c in first["onPodConditions"])


def test_restart_policy_never(any_pod):
    # podFailurePolicy requires it, and each retry must be a new pod.
    assert any_pod["restartPolicy"] == "Never"


def test_pod_runs_as_non_root(any_pod):
    sc = any_pod["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] != 0 and sc["runAsUser"] == 65532
    assert sc["runAsGroup"] != 0
    assert sc["fsGroup"] != 0
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_service_account_and_no_api_token(applied, any_pod):
    assert any_pod["serviceAccountName"] == "capbill"
    assert any_pod["automountServiceAccountToken"] is False
    account = only(applied, "ServiceAccount", "capbill")
    assert account["automountServiceAccountToken"] is False


def test_container_is_locked_down(any_container):
    sc = any_container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc["capabilities"].get("add")


def test_resources_requested_and_limited(container):
    res = container["resources"]
    for resource in ("cpu", "memory"):
        request = parse_quantity(res["requests"][resource])
        limit = parse_quantity(res["limits"][resource])
        assert 0 < request <= limit, resource
    assert parse_quantity(res["limits"]["cpu"]) == 2
    assert parse_quantity(res["limits"]["memory"]) == 2 * 2**30


def test_memory_budget_leaves_room_below_the_container_limit(applied, container):
    config = tomllib.loads(only(applied, "ConfigMap", "capbill-config")["data"]["capbill.toml"])
    budget = config["operations"]["memory_budget_mib"] * 2**20
    limit = parse_quantity(container["resources"]["limits"]["memory"])
    # The budget is what capbill aims at; one day's records, the month's
    # daily values and the outputs come on top (README "Memory").
    assert 64 * 2**20 <= budget <= limit // 2, (budget, limit)


def test_image_is_pinned_and_pulled(any_container):
    image = any_container["image"]
    assert re.fullmatch(r"[a-z0-9./-]+/capbill(:[0-9][A-Za-z0-9._-]*)?(@sha256:[0-9a-f]{64})?", image), image
    assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, "no tag or digest"
    assert not image.endswith(":latest")
    assert any_container["imagePullPolicy"] == "Always"


def test_command_is_the_nightly_run(container):
    args = argv(container)
    assert Path(args[0]).name == "capbill"
    assert args[1] == "run"
    # Nightly mode: the current month to date and the previous one.
    assert "--month" not in args
    assert option(args, "--log-format") == "json"


def test_scratch_is_an_empty_dir_and_tmpdir_points_at_it(any_pod, any_container):
    scratch = [m for m in any_container["volumeMounts"] if "emptyDir" in volume(any_pod, m["name"])]
    assert len(scratch) == 1
    mount = scratch[0]
    assert mount.get("readOnly", False) is False
    assert volume(any_pod, mount["name"])["emptyDir"].get("sizeLimit"), "an emptyDir without sizeLimit can fill the node"
    assert env_of(any_container)["TMPDIR"]["value"] == mount["mountPath"]


def test_summary_is_written_to_a_writable_mount(any_pod, any_container):
    summary = option(argv(any_container), "--summary-json")
    assert any(under(summary, d) for d in writable_dirs(any_pod, any_container)), summary


def test_config_comes_from_the_configmap(everything, any_pod, any_container):
    config_path = option(argv(any_container), "--config")
    directory, file_name = config_path.rsplit("/", 1)
    mount = [m for m in any_container["volumeMounts"] if m["mountPath"] == directory]
    assert len(mount) == 1, f"nothing mounted at {directory}"
    assert mount[0]["readOnly"] is True
    source = volume(any_pod, mount[0]["name"])["configMap"]
    items = {i["path"]: i["key"] for i in source.get("items", [])}
    key = items.get(file_name, file_name)
    configmap = only(everything, "ConfigMap", source["name"])
    assert key in configmap["data"], f"ConfigMap {source['name']} has no key {key}"


def test_configmap_is_a_valid_capbill_config(applied):
    config = tomllib.loads(only(applied, "ConfigMap", "capbill-config")["data"]["capbill.toml"])
    # capbill refuses unknown keys (serde deny_unknown_fields).
    assert set(config) <= {"locations", "billing", "operations", "s3", "alerts", "collect"}
    assert set(config["locations"]) == {"directory", "usage", "out"}
    assert all(v.startswith("s3://") for v in config["locations"].values())
    billing = config["billing"]
    assert set(billing) <= {"unit", "daily_method", "skip_bad_records"}
    assert billing["unit"] in {"tb", "tib"}
    assert billing["daily_method"] in {"mean", "max"}
    assert billing["skip_bad_records"] is False
    assert set(config.get("operations", {})) <= {"grace_days", "lock_ttl_minutes", "memory_budget_mib"}
    s3 = config.get("s3", {})
    allowed = {
        "endpoint_url",
        "region",
        "force_path_style",
        "checksum",
        "max_attempts",
        "connect_timeout_secs",
        "operation_timeout_secs",
        "concurrency",
        "profile",
    }
    assert set(s3) <= allowed, "no keys in the ConfigMap: they belong in a Secret"


def test_configmap_collect_section_names_a_source_and_no_token(applied):
    config = tomllib.loads(only(applied, "ConfigMap", "capbill-config")["data"]["capbill.toml"])
    collect = config["collect"]
    # The keys of [collect] (RawCollect), except `token`: it is a secret and
    # comes from the Secret capbill-collect-token as CAPBILL_COLLECT_TOKEN.
    allowed = {
        "source",
        "endpoint",
        "prefix",
        "preset",
        "metric",
        "bucket_label",
        "page_size",
        "concurrency",
        "max_attempts",
        "timeout_secs",
    }
    assert set(collect) <= allowed, "no token in the ConfigMap: it belongs in a Secret"
    assert collect["source"] in {"garage", "prometheus", "s3-list"}
    if collect["source"] != "s3-list":
        # s3-list defaults to the S3 endpoint; the others have none.
        assert re.fullmatch(r"https?://[a-z0-9.-]+(:[0-9]+)?(/\S*)?", collect["endpoint"]), collect["endpoint"]
    assert collect.get("preset", "seaweedfs") in {"seaweedfs", "minio"}
    prefix = collect.get("prefix", "collected")
    assert prefix and all(part not in {"", ".", ".."} for part in prefix.strip("/").split("/"))
    for key in ("page_size", "concurrency", "max_attempts", "timeout_secs"):
        assert isinstance(collect.get(key, 1), int) and collect.get(key, 1) >= 1, key


def test_s3_connection_settings(any_container):
    env = env_of(any_container)
    assert env["CAPBILL_S3_ENDPOINT_URL"]["value"].startswith("https://")
    assert env["CAPBILL_S3_REGION"]["value"]
    assert env["CAPBILL_S3_FORCE_PATH_STYLE"]["value"] in {"true", "false"}
    assert env["CAPBILL_S3_CHECKSUM"]["value"] in {"when_supported", "when_required"}


def test_no_secret_value_in_the_cronjob(everything, any_cronjob, any_container):
    env = env_of(any_container)
    for name in CREDENTIAL_VARS & set(env):
        assert "value" not in env[name], f"{name} has a literal value"
    assert "envFrom" not in any_container, "every variable is named, none comes in bulk"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "capbill-s3-credentials" and ref["key"] == name
    # Nor do the example Secrets' values appear anywhere in the CronJob.
    text = yaml.safe_dump(any_cronjob)
    for name in ("capbill-s3-credentials", COLLECT_TOKEN_SECRET):
        secret = only(everything, "Secret", name)
        for value in secret["stringData"].values():
            assert value not in text


def test_example_secret_is_a_placeholder_and_never_applied(applied, everything):
    assert [d for _, d in applied if d["kind"] == "Secret"] == [], "kubectl apply -f deploy/kubernetes/ would overwrite real keys"
    secret = only(everything, "Secret", "capbill-s3-credentials")
    assert "data" not in secret
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all("REPLACE" in v for v in secret["stringData"].values())
    token = only(everything, "Secret", COLLECT_TOKEN_SECRET)
    assert "data" not in token
    assert set(token["stringData"]) == {COLLECT_TOKEN}
    assert all("REPLACE" in v for v in token["stringData"].values())


def test_web_identity_token_file_matches_the_projected_token(everything, any_pod, any_container):
    env = env_of(any_container)
    for name in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        ref = env[name]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "capbill-web-identity" and ref["key"] == name and ref["optional"] is True
    projected = [v for v in any_pod["volumes"] if "projected" in v]
    assert len(projected) == 1
    (source,) = projected[0]["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "sts.amazonaws.com"
    assert token["expirationSeconds"] <= 86400
    mount = mounts_by_volume(any_container)[projected[0]["name"]]
    assert mount["readOnly"] is True
    example = only(everything, "ConfigMap", "capbill-web-identity")
    assert example["data"]["AWS_WEB_IDENTITY_TOKEN_FILE"] == f"{mount['mountPath']}/{token['path']}"
    assert example["data"]["AWS_ROLE_ARN"].startswith("arn:aws:iam::")


def test_everything_lives_in_the_capbill_namespace(applied, everything):
    namespace = only(applied, "Namespace", "capbill")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for path, doc in everything:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "capbill", path
    # kubectl applies a folder's files in name order: the Namespace first.
    assert sorted(K8S.glob("*.yaml"))[0].name == "00-namespace.yaml"


def test_checkov_skips_are_justified(everything):
    for path, doc in everything:
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
                assert len(reason.split()) >= 5, f"{path}: {check} needs a reason"


# --- the hourly collect CronJob ------------------------------------------------


def test_collect_runs_hourly_utc_one_at_a_time(collect_cronjob):
    spec = collect_cronjob["spec"]
    assert spec["schedule"] in {"0 * * * *", "5 * * * *"}
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec.get("suspend", False) is False
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1


def test_collect_job_ends_before_the_next_hour(collect_cronjob, collect_job):
    # The latest start plus the Job's deadline (retries included) ends before
    # the next hour's start, which Forbid would otherwise skip.
    late = collect_cronjob["spec"]["startingDeadlineSeconds"]
    deadline = collect_job["activeDeadlineSeconds"]
    assert isinstance(late, int) and 0 < late
    assert isinstance(deadline, int) and 0 < deadline <= 30 * 60
    assert late + deadline < 3600
    assert 1 <= collect_job["backoffLimit"] <= 3
    # Finished Jobs (and their logs) are kept long enough to look at, and
    # cleaned up: one a hour adds up.
    assert 3600 <= collect_job["ttlSecondsAfterFinished"] <= 7 * 86400


def test_collect_pod_failure_policy_fails_at_once_where_a_retry_cannot_help(collect_job):
    assert exit_code_rules(collect_job, "FailJob") == COLLECT_NO_RETRY


def test_collect_pod_failure_policy_counts_retryable_failures(collect_job):
    assert exit_code_rules(collect_job, "Count") == COLLECT_RETRY
    assert exit_code_rules(collect_job, "Ignore") == set()


def test_collect_command_reads_the_nightly_runs_config(collect_container, container):
    args = argv(collect_container)
    assert args[0] == argv(container)[0]
    assert args[1] == "collect"
    assert option(args, "--config") == option(argv(container), "--config")
    assert option(args, "--log-format") == "json"
    # Locations and the source come from the shared config file (and the
    # token from the environment), so both jobs read and write the same place.
    for flag in ("--usage", "--directory", "--source", "--endpoint", "--token"):
        assert not any(a == flag or a.startswith(flag + "=") for a in args), flag
    # Not the nightly run's summary file, should the two share a volume.
    assert option(args, "--summary-json") != option(argv(container), "--summary-json")


def test_collect_shares_the_configmap_with_the_nightly_run(pod, container, collect_pod, collect_container):
    def config_volume(p, c):
        directory = option(argv(c), "--config").rsplit("/", 1)[0]
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == directory]
        return mount, volume(p, mount["name"])

    mount, vol = config_volume(collect_pod, collect_container)
    nightly_mount, nightly_vol = config_volume(pod, container)
    assert vol["configMap"]["name"] == "capbill-config"
    assert vol == nightly_vol
    assert mount == nightly_mount


def test_collect_shares_the_s3_credentials_and_settings_with_the_nightly_run(
    pod, container, collect_pod, collect_container
):
    env, nightly = env_of(collect_container), env_of(container)
    shared = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "CAPBILL_S3_ENDPOINT_URL",
        "CAPBILL_S3_REGION",
        "CAPBILL_S3_FORCE_PATH_STYLE",
        "CAPBILL_S3_CHECKSUM",
    ]
    for name in shared:
        assert env[name] == nightly[name], name
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "capbill-s3-credentials"
    # The same projected web identity token, mounted at the same place.
    (projected,) = [v for v in collect_pod["volumes"] if "projected" in v]
    (nightly_projected,) = [v for v in pod["volumes"] if "projected" in v]
    assert projected == nightly_projected
    assert mounts_by_volume(collect_container)[projected["name"]] == mounts_by_volume(container)[nightly_projected["name"]]


def test_collect_token_comes_only_from_a_secret(applied, everything, collect_cronjob, collect_container):
    ref = env_of(collect_container)[COLLECT_TOKEN]
    assert set(ref) == {"name", "valueFrom"}, "no literal value"
    assert set(ref["valueFrom"]) == {"secretKeyRef"}
    secret_ref = ref["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] == COLLECT_TOKEN_SECRET and secret_ref["key"] == COLLECT_TOKEN
    example = only(everything, "Secret", COLLECT_TOKEN_SECRET)
    assert secret_ref["key"] in example["stringData"]
    # Not on the command line (visible in the pod spec and in ps), nor in the
    # ConfigMap, nor in the nightly run, which has no use for it.
    assert not any("token" in a.lower() for a in argv(collect_container))
    config = tomllib.loads(only(applied, "ConfigMap", "capbill-config")["data"]["capbill.toml"])
    assert "token" not in config.get("collect", {})
    assert COLLECT_TOKEN not in env_of(container_of(only(applied, "CronJob", NIGHTLY)))
    assert yaml.safe_dump(collect_cronjob).count(COLLECT_TOKEN_SECRET) == 1


def test_collect_security_settings_equal_the_nightly_runs(pod, container, collect_pod, collect_container):
    for key in ("securityContext", "serviceAccountName", "automountServiceAccountToken", "restartPolicy"):
        assert collect_pod[key] == pod[key], key
    for key in ("securityContext", "image", "imagePullPolicy", "command", "terminationMessagePolicy"):
        assert collect_container[key] == container[key], key
    assert [c["name"] for c in collect_pod["containers"]] == [c["name"] for c in pod["containers"]]
    assert "initContainers" not in collect_pod and "hostNetwork" not in collect_pod


def test_collect_resources_are_small(container, collect_pod, collect_container):
    res = collect_container["resources"]
    for resource in ("cpu", "memory", "ephemeral-storage"):
        request = parse_quantity(res["requests"][resource])
        limit = parse_quantity(res["limits"][resource])
        assert 0 < request <= limit, resource
        # A snapshot holds one row per bucket: less than a billing run needs.
        assert limit <= parse_quantity(container["resources"]["limits"][resource]), resource
    assert parse_quantity(res["limits"]["cpu"]) <= 1
    assert parse_quantity(res["limits"]["memory"]) <= 2**30
    # The scratch emptyDir fits in the container's ephemeral storage.
    scratch = [volume(collect_pod, m["name"]) for m in collect_container["volumeMounts"]]
    (size,) = [v["emptyDir"]["sizeLimit"] for v in scratch if "emptyDir" in v]
    assert parse_quantity(size) <= parse_quantity(res["limits"]["ephemeral-storage"])


def test_each_cronjob_labels_its_jobs_and_pods_with_its_component(applied):
    for name, component in COMPONENTS.items():
        cronjob = only(applied, "CronJob", name)
        template = cronjob["spec"]["jobTemplate"]
        for meta in (cronjob["metadata"], template["metadata"], template["spec"]["template"]["metadata"]):
            assert meta["labels"]["app.kubernetes.io/name"] == "capbill", name
            assert meta["labels"]["app.kubernetes.io/component"] == component, name
    assert len(set(COMPONENTS.values())) == len(COMPONENTS)
    assert sorted(d["metadata"]["name"] for _, d in applied if d["kind"] == "CronJob") == sorted(COMPONENTS)


# --- Dockerfile --------------------------------------------------------------


def dockerfile_stages():
    """[(FROM line, [instructions])] with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    stages = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append((line, []))
        else:
            assert stages, f"instruction before FROM: {line}"
            stages[-1][1].append(line)
    return stages


def test_dockerfile_final_stage_runs_as_non_root(pod):
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: the toolchain stays out of the image"
    _, final = stages[-1]
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user not in {"0", "root"} and group not in {"0", "root"}
    assert int(user) == pod["securityContext"]["runAsUser"]


def test_dockerfile_images_pinned_and_entrypoint(container):
    stages = dockerfile_stages()
    for from_line, _ in stages:
        image = from_line.split()[1]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), from_line
    _, final = stages[-1]
    entrypoint = [line for line in final if line.upper().startswith("ENTRYPOINT ")]
    assert entrypoint and entrypoint[-1].split(None, 1)[1] == '["/usr/local/bin/capbill"]'
    assert argv(container)[0] == "/usr/local/bin/capbill"
    copies = [line for line in final if line.upper().startswith("COPY ")]
    assert copies == ["COPY --from=builder /build/target/release/capbill /usr/local/bin/capbill"]


def test_dockerfile_has_every_file_cargo_needs_before_it_builds():
    """The dependency layer builds from stand-ins of src/main.rs and src/lib.rs.

    Cargo parses every target that Cargo.toml declares, built or not: each
    declared bench, test or example must be in the build context (.dockerignore)
    and copied before the first `cargo build`, or `docker build` fails.
    """
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    assert "build" not in manifest["package"] and not (ROOT / "build.rs").exists(), "a build script: update the Dockerfile"
    assert manifest.get("lib", {}).get("path", "src/lib.rs") == "src/lib.rs"
    assert {b.get("path", "src/main.rs") for b in manifest.get("bin", [])} <= {"src/main.rs"}
    default_dir = {"bench": "benches", "test": "tests", "example": "examples"}
    needed = set()
    for kind, directory in default_dir.items():
        for target in manifest.get(kind, []):
            path = target.get("path", f"{directory}/{target['name']}.rs")
            needed.add(path.split("/", 1)[0])
    (_, builder), *_ = dockerfile_stages()
    first_build = next(i for i, line in enumerate(builder) if "cargo build" in line)
    copied = {line.split()[1].rstrip("/") for line in builder[:first_build] if line.upper().startswith("COPY ")}
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for directory in sorted(needed):
        assert directory in copied, f"COPY {directory} before the dependency build"
        assert f"!{directory}/" in ignore, f".dockerignore must let {directory}/ through"
        assert (ROOT / directory).is_dir()
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "src/main.rs" in text and "src/lib.rs" in text
    assert text.count("cargo build --release --locked") == 2


# --- systemd -------------------------------------------------------------------


def read_unit(path):
    """{section: {key: [values]}}; repeated keys keep every value."""
    unit, section = {}, None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = unit.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def last(section, key, default=None):
    return section.get(key, [default])[-1]


def minutes(value):
    """A systemd time span such as "2h", "30min" or "90s", in minutes."""
    m = re.fullmatch(r"(\d+)(h|min|s)", value or "")
    assert m, f"cannot read time span {value!r} (h, min or s)"
    return int(m.group(1)) * {"h": 60, "min": 1, "s": 1 / 60}[m.group(2)]


def writable_paths(s):
    """The paths a hardened service can write to."""
    writable = [f"/var/lib/{d}" for v in s.get("StateDirectory", []) for d in v.split()]
    writable += [f"/var/cache/{d}" for v in s.get("CacheDirectory", []) for d in v.split()]
    writable += [p for value in s.get("ReadWritePaths", []) for p in value.split()]
    return writable


def codes(section, key):
    return {int(word) for value in section.get(key, []) for word in value.split() if word.isdigit()}


def systemd_restarts_on(service, code):
    """Whether systemd restarts the service after it exits with `code`."""
    restart = last(service, "Restart", "no")
    if restart == "no" or code in codes(service, "RestartPreventExitStatus"):
        return False
    if code in codes(service, "RestartForceExitStatus"):
        return True
    clean = code == 0 or code in codes(service, "SuccessExitStatus")
    return {"always": True, "on-success": clean, "on-failure": not clean}.get(restart, False)


@pytest.fixture(scope="module")
def service():
    return read_unit(SYSTEMD / "capbill.service")


@pytest.fixture(scope="module")
def collect_service():
    return read_unit(SYSTEMD / "capbill-collect.service")


def test_systemd_does_not_restart_where_a_retry_cannot_help(service):
    for code in NO_RETRY:
        assert not systemd_restarts_on(service["Service"], code), code
    assert not systemd_restarts_on(service["Service"], 0)


def test_systemd_retries_storage_failures_and_a_held_lock_a_bounded_number_of_times(service):
    for code in RETRY:
        assert systemd_restarts_on(service["Service"], code), code
    assert 1 < int(last(service["Unit"], "StartLimitBurst")) <= 5
    assert last(service["Unit"], "StartLimitIntervalSec")


def test_systemd_service_is_a_hardened_oneshot(service):
    s = service["Service"]
    assert last(s, "Type") == "oneshot"
    assert last(s, "NoNewPrivileges") == "yes"
    assert last(s, "ProtectSystem") == "strict"
    assert last(s, "DynamicUser") == "yes" or last(s, "User") not in {None, "root", "0"}
    assert last(s, "CapabilityBoundingSet") == ""
    assert last(s, "EnvironmentFile") == "/etc/capbill/env"
    # A oneshot has no start timeout by default: a hung run must end (its
    # lock, renewed while it runs, then expires after lock_ttl_minutes).
    timeout = re.fullmatch(r"(\d+)(h|min)", last(s, "TimeoutStartSec", ""))
    assert timeout, "TimeoutStartSec in h or min"
    assert int(timeout.group(1)) * {"h": 60, "min": 1}[timeout.group(2)] <= 120


def test_systemd_runs_the_same_command_with_writable_scratch(service, container):
    s = service["Service"]
    args = shlex.split(last(s, "ExecStart"))
    assert args[0] == "/usr/local/bin/capbill" and args[1] == "run"
    assert "--month" not in args
    assert option(args, "--config") == option(argv(container), "--config")
    assert option(args, "--log-format") == "json"
    environment = dict(kv.split("=", 1) for value in s.get("Environment", []) for kv in shlex.split(value))
    writable = [f"/var/lib/{d}" for d in s.get("StateDirectory", [])]
    writable += [f"/var/cache/{d}" for d in s.get("CacheDirectory", [])]
    writable += [p for value in s.get("ReadWritePaths", []) for p in value.split()]
    assert any(under(environment["TMPDIR"], d) for d in writable)
    assert any(under(option(args, "--summary-json"), d) for d in writable)


def test_systemd_timer_is_nightly_utc_and_catches_up():
    timer = read_unit(SYSTEMD / "capbill.timer")["Timer"]
    assert last(timer, "OnCalendar") == "*-*-* 02:30:00 UTC"
    assert last(timer, "Persistent") == "true"
    assert last(timer, "RandomizedDelaySec")
    assert last(timer, "Unit", "capbill.service") == "capbill.service"


def test_systemd_collect_does_not_restart_where_a_retry_cannot_help(collect_service):
    for code in COLLECT_NO_RETRY:
        assert not systemd_restarts_on(collect_service["Service"], code), code
    assert not systemd_restarts_on(collect_service["Service"], 0)


def test_systemd_collect_retries_source_failures_within_its_hour(collect_service):
    s, unit = collect_service["Service"], collect_service["Unit"]
    for code in COLLECT_RETRY:
        assert systemd_restarts_on(s, code), code
    burst = int(last(unit, "StartLimitBurst"))
    window = minutes(last(unit, "StartLimitIntervalSec"))
    assert 1 < burst <= 4
    # The retries fit in the window, and the window ends before the timer's
    # next start, which the start limit would otherwise refuse.
    assert (burst - 1) * minutes(last(s, "RestartSec")) < window < 60
    # A stuck collection ends well before the next hour.
    assert minutes(last(s, "TimeoutStartSec")) <= 30


def test_systemd_collect_is_hardened_like_the_nightly_run(service, collect_service):
    nightly, collect = service["Service"], collect_service["Service"]
    # What may differ between the two: the command, its retries and limits,
    # and User= (see the next test). All the sandboxing is the same.
    own = {
        "ExecStart",
        "SyslogIdentifier",
        "RestartSec",
        "RestartPreventExitStatus",
        "TimeoutStartSec",
        "TimeoutStopSec",
        "MemoryMax",
        "CPUQuota",
        "User",
    }
    assert set(collect) - own == set(nightly) - own
    for key in set(nightly) - own:
        assert collect[key] == nightly[key], key
    assert last(collect, "Type") == "oneshot"
    assert last(collect, "EnvironmentFile") == "/etc/capbill/env"
    # Smaller than the nightly run.
    memory = re.fullmatch(r"(\d+)([MG])", last(collect, "MemoryMax"))
    assert memory and int(memory.group(1)) * {"M": 2**20, "G": 2**30}[memory.group(2)] <= 2**30
    assert int(last(collect, "CPUQuota").rstrip("%")) <= int(last(nightly, "CPUQuota").rstrip("%"))


def test_systemd_collect_writes_where_the_nightly_run_reads(service, collect_service, container):
    nightly, collect = service["Service"], collect_service["Service"]
    args = shlex.split(last(collect, "ExecStart"))
    assert args[0] == "/usr/local/bin/capbill" and args[1] == "collect"
    assert option(args, "--config") == option(shlex.split(last(nightly, "ExecStart")), "--config")
    assert option(args, "--config") == option(argv(container), "--config")
    assert option(args, "--log-format") == "json"
    assert not any("token" in a.lower() for a in args), "the token comes from /etc/capbill/env only"
    environment = dict(kv.split("=", 1) for value in collect.get("Environment", []) for kv in shlex.split(value))
    writable = writable_paths(collect)
    assert any(under(environment["TMPDIR"], d) for d in writable)
    summary = option(args, "--summary-json")
    assert any(under(summary, d) for d in writable)
    assert summary != option(shlex.split(last(nightly, "ExecStart")), "--summary-json")
    # One transient user for both (the nightly's is named after its unit):
    # they share /var/lib/capbill, so a local usage folder there is written by
    # the one and read by the other, and neither changes its owner.
    assert last(collect, "DynamicUser") == last(nightly, "DynamicUser") == "yes"
    assert last(collect, "User") == last(nightly, "User", "capbill") == "capbill"
    assert collect["StateDirectory"] == nightly["StateDirectory"]


def test_systemd_collect_timer_is_hourly_and_catches_up():
    timer = read_unit(SYSTEMD / "capbill-collect.timer")["Timer"]
    assert last(timer, "OnCalendar") == "hourly"
    assert last(timer, "Persistent") == "true"
    # Spread over a few minutes, well inside the hour.
    assert 0 < minutes(last(timer, "RandomizedDelaySec")) <= 15
    assert last(timer, "Unit") == "capbill-collect.service"
    assert (SYSTEMD / "capbill-collect.service").is_file()


# --- cron ----------------------------------------------------------------------


def crontab():
    """(settings, {capbill subcommand: (entry, its fields, flock's argv, capbill's argv)})."""
    lines = [line for line in CRONTAB.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    settings = dict(line.split("=", 1) for line in lines if re.fullmatch(r"[A-Z_]+=.*", line))
    entries = {}
    for entry in [line for line in lines if not re.fullmatch(r"[A-Z_]+=.*", line)]:
        fields = entry.split(None, 6)
        command = shlex.split(fields[6])
        inner = shlex.split(command[-1])
        start = inner.index("capbill")
        assert inner[start + 1] not in entries, f"two entries run capbill {inner[start + 1]}"
        entries[inner[start + 1]] = (entry, fields, command, inner[start:])
    return settings, entries


def test_crontab_has_the_nightly_run_and_the_hourly_collection():
    settings, entries = crontab()
    assert settings["CRON_TZ"] == "UTC"
    assert set(entries) == {"run", "collect"}


def test_crontab_runs_at_0230_utc_under_flock(container):
    _, entries = crontab()
    entry, fields, command, run = entries["run"]
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    assert fields[5] == "capbill", "an /etc/cron.d entry names its user"
    assert command[0] == "flock" and "--nonblock" in command
    assert option(command, "--conflict-exit-code") == "4"
    assert run[0] == "capbill"
    assert "--month" not in run
    assert option(run, "--config") == option(argv(container), "--config")
    assert option(run, "--log-format") == "json"
    assert "%" not in entry, "cron turns % into a newline"


def test_crontab_collects_hourly_under_its_own_flock(container):
    _, entries = crontab()
    entry, fields, command, collect = entries["collect"]
    _, nightly_fields, nightly_command, nightly = entries["run"]
    assert fields[0] in {"0", "5"} and fields[1:5] == ["*", "*", "*", "*"]
    assert fields[5] == nightly_fields[5] == "capbill"
    assert command[0] == "flock" and "--nonblock" in command
    # Its own lock: a long nightly run must not stop the hourly collection.
    # Both in the capbill user's own folder (created by the install steps):
    # /run/lock is root's alone where systemd's default mode 0755 applies.
    (lock,) = [a for a in command[1:-1] if a.endswith(".lock")]
    (nightly_lock,) = [a for a in nightly_command[1:-1] if a.endswith(".lock")]
    assert lock != nightly_lock
    assert lock.startswith("/var/lib/capbill/") and nightly_lock.startswith("/var/lib/capbill/")
    assert "install -d -o capbill -g capbill -m 0750 /var/lib/capbill" in CRONTAB.read_text(encoding="utf-8")
    # A collection still going: "retry may help", as for an unreachable source.
    assert option(command, "--conflict-exit-code") in {str(c) for c in COLLECT_RETRY}
    assert option(collect, "--config") == option(nightly, "--config") == option(argv(container), "--config")
    assert option(collect, "--log-format") == "json"
    assert option(collect, "--summary-json") != option(nightly, "--summary-json")
    assert not any("token" in a.lower() for a in collect), "the token comes from /etc/capbill/env only"
    # The same environment file (S3 keys and the token) as the nightly run.
    assert ". /etc/capbill/env;" in command[-1] and ". /etc/capbill/env;" in nightly_command[-1]
    assert "%" not in entry, "cron turns % into a newline"
