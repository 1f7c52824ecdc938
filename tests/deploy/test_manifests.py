"""Checks of the deployment files that the validators cannot make.

kubernetes-validate checks the shape of the manifests and checkov a set of
security rules, but neither knows what capbill needs: which exit codes a retry
can fix, where the config is mounted, which paths must be writable. These
tests pin those values. Run them with scripts/validate-deploy.
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

# Environment variables that carry credentials: never a literal value.
CREDENTIAL_VARS = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "CAPBILL_S3_ACCESS_KEY_ID",
    "CAPBILL_S3_SECRET_ACCESS_KEY",
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


@pytest.fixture(scope="module")
def cronjob(applied):
    return only(applied, "CronJob", "capbill")


@pytest.fixture(scope="module")
def job(cronjob):
    return cronjob["spec"]["jobTemplate"]["spec"]


@pytest.fixture(scope="module")
def pod(job):
    return job["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod):
    containers = {c["name"]: c for c in pod["containers"]}
    assert "capbill" in containers, "the podFailurePolicy rules name the container capbill"
    return containers["capbill"]


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
    assert job["backoffLimit"] == 3
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


def test_pod_failure_policy_ignores_disruptions_first(job):
    rules = job["podFailurePolicy"]["rules"]
    first = rules[0]
    assert first["action"] == "Ignore"
    assert [c["type"] for c in first["onPodConditions"]] == ["DisruptionTarget"]
    assert all(c.get("status", "True") == "True" for c in first["onPodConditions"])


def test_restart_policy_never(pod):
    # podFailurePolicy requires it, and each retry must be a new pod.
    assert pod["restartPolicy"] == "Never"


def test_pod_runs_as_non_root(pod):
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] != 0 and sc["runAsUser"] == 65532
    assert sc["runAsGroup"] != 0
    assert sc["fsGroup"] != 0
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_service_account_and_no_api_token(applied, pod):
    assert pod["serviceAccountName"] == "capbill"
    assert pod["automountServiceAccountToken"] is False
    account = only(applied, "ServiceAccount", "capbill")
    assert account["automountServiceAccountToken"] is False


def test_container_is_locked_down(container):
    sc = container["securityContext"]
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


def test_image_is_pinned_and_pulled(container):
    image = container["image"]
    assert re.fullmatch(r"[a-z0-9./-]+/capbill(:[0-9][A-Za-z0-9._-]*)?(@sha256:[0-9a-f]{64})?", image), image
    assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, "no tag or digest"
    assert not image.endswith(":latest")
    assert container["imagePullPolicy"] == "Always"


def test_command_is_the_nightly_run(container):
    args = argv(container)
    assert Path(args[0]).name == "capbill"
    assert args[1] == "run"
    # Nightly mode: the current month to date and the previous one.
    assert "--month" not in args
    assert option(args, "--log-format") == "json"


def test_scratch_is_an_empty_dir_and_tmpdir_points_at_it(pod, container):
    scratch = [m for m in container["volumeMounts"] if "emptyDir" in volume(pod, m["name"])]
    assert len(scratch) == 1
    mount = scratch[0]
    assert mount.get("readOnly", False) is False
    assert volume(pod, mount["name"])["emptyDir"].get("sizeLimit"), "an emptyDir without sizeLimit can fill the node"
    assert env_of(container)["TMPDIR"]["value"] == mount["mountPath"]


def test_summary_is_written_to_a_writable_mount(pod, container):
    summary = option(argv(container), "--summary-json")
    assert any(under(summary, d) for d in writable_dirs(pod, container)), summary


def test_config_comes_from_the_configmap(everything, pod, container):
    config_path = option(argv(container), "--config")
    directory, file_name = config_path.rsplit("/", 1)
    mount = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert len(mount) == 1, f"nothing mounted at {directory}"
    assert mount[0]["readOnly"] is True
    source = volume(pod, mount[0]["name"])["configMap"]
    items = {i["path"]: i["key"] for i in source.get("items", [])}
    key = items.get(file_name, file_name)
    configmap = only(everything, "ConfigMap", source["name"])
    assert key in configmap["data"], f"ConfigMap {source['name']} has no key {key}"


def test_configmap_is_a_valid_capbill_config(applied):
    config = tomllib.loads(only(applied, "ConfigMap", "capbill-config")["data"]["capbill.toml"])
    # capbill refuses unknown keys (serde deny_unknown_fields).
    assert set(config) <= {"locations", "billing", "operations", "s3", "alerts"}
    assert set(config["locations"]) == {"directory", "usage", "out"}
    assert all(v.startswith("s3://") for v in config["locations"].values())
    billing = config["billing"]
    assert set(billing) <= {"unit", "daily_method", "skip_bad_records"}
    assert billing["unit"] in {"tb", "tib"}
    assert billing["daily_method"] in {"mean", "max"}
    assert billing["skip_bad_records"] is False
    assert set(config.get("operations", {})) <= {"grace_days", "lock_ttl_minutes"}
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


def test_s3_connection_settings(container):
    env = env_of(container)
    assert env["CAPBILL_S3_ENDPOINT_URL"]["value"].startswith("https://")
    assert env["CAPBILL_S3_REGION"]["value"]
    assert env["CAPBILL_S3_FORCE_PATH_STYLE"]["value"] in {"true", "false"}
    assert env["CAPBILL_S3_CHECKSUM"]["value"] in {"when_supported", "when_required"}


def test_no_secret_value_in_the_cronjob(everything, cronjob, container):
    env = env_of(container)
    for name in CREDENTIAL_VARS & set(env):
        assert "value" not in env[name], f"{name} has a literal value"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "capbill-s3-credentials" and ref["key"] == name
    # Nor do the example Secret's values appear anywhere in the CronJob.
    text = yaml.safe_dump(cronjob)
    secret = only(everything, "Secret", "capbill-s3-credentials")
    for value in secret["stringData"].values():
        assert value not in text


def test_example_secret_is_a_placeholder_and_never_applied(applied, everything):
    assert [d for _, d in applied if d["kind"] == "Secret"] == [], "kubectl apply -f deploy/kubernetes/ would overwrite real keys"
    secret = only(everything, "Secret", "capbill-s3-credentials")
    assert "data" not in secret
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all("REPLACE" in v for v in secret["stringData"].values())


def test_web_identity_token_file_matches_the_projected_token(everything, pod, container):
    env = env_of(container)
    for name in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        ref = env[name]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "capbill-web-identity" and ref["key"] == name and ref["optional"] is True
    projected = [v for v in pod["volumes"] if "projected" in v]
    assert len(projected) == 1
    (source,) = projected[0]["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "sts.amazonaws.com"
    assert token["expirationSeconds"] <= 86400
    mount = mounts_by_volume(container)[projected[0]["name"]]
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


# --- cron ----------------------------------------------------------------------


def test_crontab_runs_at_0230_utc_under_flock(container):
    lines = [line for line in CRONTAB.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    settings = dict(line.split("=", 1) for line in lines if re.fullmatch(r"[A-Z_]+=.*", line))
    assert settings["CRON_TZ"] == "UTC"
    (entry,) = [line for line in lines if not re.fullmatch(r"[A-Z_]+=.*", line)]
    fields = entry.split(None, 6)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    assert fields[5] == "capbill", "an /etc/cron.d entry names its user"
    command = shlex.split(fields[6])
    assert command[0] == "flock" and "--nonblock" in command
    assert option(command, "--conflict-exit-code") == "4"
    inner = shlex.split(command[-1])
    run = inner[inner.index("run") - 1 :]
    assert run[0] == "capbill"
    assert "--month" not in run
    assert option(run, "--config") == option(argv(container), "--config")
    assert option(run, "--log-format") == "json"
    assert "%" not in entry, "cron turns % into a newline"
