"""Registration-time configuration: the schedules file, notification recipients and the GPU selector.
A mistake must stop `pyflyte register` with a message that names what to fix."""

import subprocess
import sys

import pytest

from edge_deploy.errors import ConfigError
from edge_deploy.schedules import load_schedules, notification_recipients, parse_schedules
from tasks.cluster import gpu_node_selector
from tests.flyte_specs.conftest import ROOT, clean_env

KNOWN = {"x86_64-cpu", "arm64-cpu", "linux/arm64"}


def entry(**overrides):
    base = {"name": "detector", "repo": "models", "branch": "main", "targets": ["x86_64-cpu"], "repository": "edge/d"}
    return {**base, **overrides}


def document(*entries, **top):
    return {"schema_version": 1, "nightly": list(entries), **top}


def test_defaults_fill_what_an_entry_leaves_out():
    (deploy,) = parse_schedules(document(entry(), defaults={"cron": "15 3 * * *"}), "s.yaml", KNOWN)
    assert (deploy.cron, deploy.prefix, deploy.publish_branch) == ("15 3 * * *", "model/", "")
    assert deploy.targets == ("x86_64-cpu",)


def test_every_problem_is_reported_at_once_naming_entry_and_field():
    bad = document(
        entry(targets=["x86_64-cpu", "riscv-npu"]),
        entry(name="Bad Name", repository=""),
        entry(name="seg", branch=["main"], colour="blue"),
        entry(name="detector"),
    )
    with pytest.raises(ConfigError) as caught:
        parse_schedules(bad, "schedules.yaml", KNOWN)
    message = str(caught.value)
    assert message.startswith("schedules.yaml: 6 problem(s)")
    assert "nightly[0] (detector): unknown targets ['riscv-npu']" in message
    assert "nightly[1] (Bad Name): name must be lower-case" in message
    assert "nightly[1] (Bad Name): repository must be a non-empty string" in message
    assert "nightly[2] (seg): unknown field 'colour'" in message
    assert "nightly[2] (seg): branch must be a non-empty string, got ['main']" in message
    assert "names must be unique (one launch plan each): ['detector']" in message


def test_a_wrong_schema_version_or_shape_is_refused():
    with pytest.raises(ConfigError, match="schema_version must be 1, got 2"):
        parse_schedules({"schema_version": 2, "nightly": []}, "s.yaml", KNOWN)
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_schedules(["not", "a", "mapping"], "s.yaml", KNOWN)


def test_an_unreadable_or_broken_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"schedules file .*missing.yaml: cannot read it"):
        load_schedules(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("nightly: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        load_schedules(broken)


def test_recipients_default_when_unset_and_must_be_addresses():
    assert notification_recipients(None, "EDGE_NOTIFY_EMAILS", ("a@example.com",)) == ["a@example.com"]
    assert notification_recipients(" x@corp.example , y@corp.example ", "V") == ["x@corp.example", "y@corp.example"]
    with pytest.raises(ConfigError, match="EDGE_NOTIFY_EMAILS: not e-mail addresses: #edge-alerts"):
        notification_recipients("ops@corp.example,#edge-alerts", "EDGE_NOTIFY_EMAILS")


def test_gpu_node_selector_parsing():
    assert gpu_node_selector(None) == {} and gpu_node_selector(" ") == {}
    assert gpu_node_selector("accelerator=nvidia-l4, pool=gpu") == {"accelerator": "nvidia-l4", "pool": "gpu"}
    with pytest.raises(ConfigError, match="EDGE_GPU_NODE_SELECTOR: expected key=value"):
        gpu_node_selector("nvidia")


# The error as pyflyte reports it, without rich's line wrapping.
IMPORT_LAUNCH_PLANS = """
import sys
try:
    import workflows.launch_plans
except Exception as exc:
    sys.exit(f"{type(exc).__name__}: {exc}")
"""
BAD_TARGET = "schema_version: 1\nnightly:\n  - {name: det, repo: models, targets: [vax-11], repository: r}\n"
BAD_CRON = (
    "schema_version: 1\nnightly:\n  - {name: det, repo: m, targets: [x86_64-cpu], repository: r, cron: '0 25 * * *'}\n"
)


@pytest.fixture(scope="module")
def registration_failures(tmp_path_factory):
    """What `pyflyte register` does first, importing the launch plans, in three broken environments at once."""
    work = tmp_path_factory.mktemp("registration")
    (work / "bad-target.yaml").write_text(BAD_TARGET)
    (work / "bad-cron.yaml").write_text(BAD_CRON)
    cases = {
        "bad-target": {"EDGE_SCHEDULES_FILE": str(work / "bad-target.yaml")},
        "bad-cron": {"EDGE_SCHEDULES_FILE": str(work / "bad-cron.yaml")},
        "bad-recipients": {"EDGE_NOTIFY_SLACK": "edge-alerts"},
    }
    running = {
        case: subprocess.Popen(
            [sys.executable, "-c", IMPORT_LAUNCH_PLANS], cwd=ROOT, env=clean_env(env), stderr=subprocess.PIPE, text=True
        )
        for case, env in cases.items()
    }
    results = {case: (process.communicate(timeout=120)[1], process.returncode) for case, process in running.items()}
    return {"dir": work, **results}


def test_registration_stops_on_a_bad_schedules_file_naming_it(registration_failures):
    stderr, code = registration_failures["bad-target"]
    assert code != 0
    assert f"{registration_failures['dir'] / 'bad-target.yaml'}: 1 problem(s)" in stderr
    assert "nightly[0] (det): unknown targets ['vax-11']" in stderr


def test_registration_stops_on_a_bad_cron_expression(registration_failures):
    stderr, code = registration_failures["bad-cron"]
    assert code != 0 and "nightly entry det: cron '0 25 * * *'" in stderr


def test_registration_stops_on_bad_recipients(registration_failures):
    stderr, code = registration_failures["bad-recipients"]
    assert code != 0 and "EDGE_NOTIFY_SLACK: not e-mail addresses: edge-alerts" in stderr


def test_the_shipped_schedules_file_is_valid():
    from edge_deploy.platforms import PlatformMatrix
    from workflows.launch_plans import known_targets

    assert len(load_schedules(ROOT / "workflows/schedules.yaml", known_targets(PlatformMatrix.load()))) >= 2
