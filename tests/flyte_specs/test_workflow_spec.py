"""The workflow as registered: its nodes, their order and the failure handler."""

import itertools
from graphlib import TopologicalSorter

WORKFLOW = "workflows.deploy.deploy_model"
CHAIN = [
    "download_model",
    "decrypt_model",
    "identify_model",
    "convert_model",
    "validate_onnx",
    "seal_model",
    "build_release",
    "publish_deployment",
    "record_deployment",
]


def nodes_by_task(specs):
    template = specs.workflows[WORKFLOW].template
    by_id = {node.id: node for node in template.nodes}
    return {
        node.task_node.reference_id.name.rsplit(".", 1)[-1]: {
            by_id[up].task_node.reference_id.name.rsplit(".", 1)[-1] for up in node.upstream_node_ids
        }
        for node in template.nodes
    }


def test_the_workflow_has_one_node_per_stage(specs):
    assert set(nodes_by_task(specs)) == {*CHAIN, "plan_targets"}


def test_each_stage_waits_for_the_one_before_it(specs):
    upstream = nodes_by_task(specs)
    for before, after in itertools.pairwise(CHAIN):
        assert before in upstream[after], f"{after} does not wait for {before}"
    assert upstream["download_model"] == set()
    assert "plan_targets" in upstream["build_release"] and "decrypt_model" in upstream["plan_targets"]


def test_any_valid_execution_order_runs_the_stages_in_pipeline_order(specs):
    order = list(TopologicalSorter(nodes_by_task(specs)).static_order())
    assert [name for name in order if name in CHAIN] == CHAIN
    assert order.index("plan_targets") < order.index("build_release")


def test_images_are_built_only_after_validation_passed(specs):
    upstream = nodes_by_task(specs)
    assert "validate_onnx" in upstream["build_release"] and "validate_onnx" in upstream["seal_model"]


def test_a_failure_anywhere_runs_record_failure_with_the_workflow_inputs(specs):
    template = specs.workflows[WORKFLOW].template
    failure = template.failure_node
    assert failure.task_node.reference_id.name == "tasks.record.record_failure"
    bound = {binding.var for binding in failure.inputs}
    assert {"repo", "ref", "prefix", "local_dir", "targets", "repository", "publish_branch", "options"} <= bound
    # each bound to the workflow input of the same name (flytekit names the workflow's inputs node "")
    for binding in (b for b in failure.inputs if b.var != "err"):
        assert (binding.binding.promise.node_id, binding.binding.promise.var) == ("", binding.var)
    assert failure.id not in {node.id for node in template.nodes}  # not a regular stage
