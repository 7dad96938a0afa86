"""A flyteadmin stand-in for FlyteRemote: the AdminService gRPC API (flyteidl's own service stubs and
messages) on a loopback port, serving the launch plan and workflow that flytekit serializes from this
project's code, and keeping executions in memory.

No Flyte backend can run on the project's machine (see docs/service.md), so this is
what the `flyte` executor is tested against: FlyteRemote's real client, its gRPC transport, its
launch-plan fetch, its input conversion against the registered interface, its create/get/terminate
calls and its wait loop. It does not run anything: an execution's phases follow the script the
test gives (`phases`), one step per GetExecution, or stop at ABORTED when terminated.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from flyteidl.admin import execution_pb2, launch_plan_pb2, workflow_pb2
from flyteidl.core import compiler_pb2, identifier_pb2, literals_pb2
from flyteidl.core import execution_pb2 as core_execution
from flyteidl.service import admin_pb2_grpc
from flytekit.configuration import Image, ImageConfig, SerializationSettings
from flytekit.models.core.identifier import ResourceType
from flytekit.tools.translator import get_serializable

PROJECT, DOMAIN, VERSION = "edge-deploy", "development", "v-test"
PHASE = core_execution.WorkflowExecution.Phase


def registered_entities():
    """(launch plan, workflow spec, task specs) of `deploy_model_on_demand`, as `pyflyte register` sends them."""
    from workflows.launch_plans import on_demand

    images = ImageConfig(
        default_image=Image(name="default", fqn="registry.example.com/edge-deploy-builder", tag=VERSION),
        images=[
            Image(name="conversion", fqn="registry.example.com/edge-deploy-conversion", tag=VERSION),
            Image(name="builder", fqn="registry.example.com/edge-deploy-builder", tag=VERSION),
        ],
    )
    settings = SerializationSettings(image_config=images, project=PROJECT, domain=DOMAIN, version=VERSION)
    entities = OrderedDict()
    plan = get_serializable(entities, settings, on_demand)
    specs = [spec.to_flyte_idl() for spec in entities.values() if hasattr(spec, "template")]
    workflows = [s for s in specs if s.DESCRIPTOR.name == "WorkflowSpec"]
    tasks = [s for s in specs if s.DESCRIPTOR.name == "TaskSpec"]
    return plan.to_flyte_idl(), workflows[0], tasks


@dataclass
class Execution:
    id: identifier_pb2.WorkflowExecutionIdentifier
    spec: execution_pb2.ExecutionSpec
    inputs: literals_pb2.LiteralMap
    phases: list[int]
    step: int = 0
    abort_cause: str = ""
    error: str = ""

    @property
    def phase(self) -> int:
        return PHASE.Value("ABORTED") if self.abort_cause else self.phases[min(self.step, len(self.phases) - 1)]


@dataclass
class FakeAdmin(admin_pb2_grpc.AdminServiceServicer):
    plan: launch_plan_pb2.LaunchPlan
    workflow: workflow_pb2.Workflow
    phases: list[str] = field(default_factory=lambda: ["QUEUED", "RUNNING", "SUCCEEDED"])
    failure_message: str = "[download_model] StorageError: lakeFS answered 404"
    executions: dict[str, Execution] = field(default_factory=dict)
    create_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- launch plans and workflows --
    def ListLaunchPlans(self, request, context):
        found = [self.plan] if request.id.name == self.plan.id.name else []
        return launch_plan_pb2.LaunchPlanList(launch_plans=found)

    def GetLaunchPlan(self, request, context):
        if request.id.name != self.plan.id.name or request.id.version not in ("", self.plan.id.version):
            context.abort(grpc.StatusCode.NOT_FOUND, f"launch plan {request.id.name}:{request.id.version} not found")
        return self.plan

    def GetWorkflow(self, request, context):
        if request.id.name != self.workflow.id.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"workflow {request.id.name} not found")
        return self.workflow

    # -- executions --
    def CreateExecution(self, request, context):
        with self.lock:
            self.create_calls += 1
            if request.name in self.executions:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"execution {request.name} already exists")
            identifier = identifier_pb2.WorkflowExecutionIdentifier(
                project=request.project, domain=request.domain, name=request.name
            )
            phases = [PHASE.Value(name) for name in self.phases]
            self.executions[request.name] = Execution(identifier, request.spec, request.inputs, phases)
        return execution_pb2.ExecutionCreateResponse(id=identifier)

    def GetExecution(self, request, context):
        with self.lock:
            execution = self._find(request.id.name, context)
            closure = execution_pb2.ExecutionClosure(phase=execution.phase, workflow_id=self.workflow.id)
            if execution.phase == PHASE.Value("FAILED"):
                closure.error.code, closure.error.message = "USER:Unknown", self.failure_message
            if execution.abort_cause:
                closure.abort_metadata.cause = execution.abort_cause
            execution.step += 1
            return execution_pb2.Execution(id=execution.id, spec=execution.spec, closure=closure)

    def GetExecutionData(self, request, context):
        with self.lock:
            execution = self._find(request.id.name, context)
            return execution_pb2.WorkflowExecutionGetDataResponse(full_inputs=execution.inputs)

    def TerminateExecution(self, request, context):
        with self.lock:
            self._find(request.id.name, context).abort_cause = request.cause or "terminated"
        return execution_pb2.ExecutionTerminateResponse()

    def _find(self, name: str, context) -> Execution:
        if name not in self.executions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"execution {name} not found")
        return self.executions[name]


def admin_objects() -> tuple[launch_plan_pb2.LaunchPlan, workflow_pb2.Workflow]:
    """The launch plan and workflow as flyteadmin returns them after registration (with their closures)."""
    plan, workflow_spec, task_specs = registered_entities()
    compiled = compiler_pb2.CompiledWorkflowClosure(
        primary=compiler_pb2.CompiledWorkflow(template=workflow_spec.template),
        tasks=[compiler_pb2.CompiledTask(template=spec.template) for spec in task_specs],
    )
    workflow = workflow_pb2.Workflow(
        id=workflow_spec.template.id, closure=workflow_pb2.WorkflowClosure(compiled_workflow=compiled)
    )
    admin_plan = launch_plan_pb2.LaunchPlan(id=plan.id, spec=plan.spec)
    admin_plan.closure.state = launch_plan_pb2.ACTIVE
    admin_plan.closure.expected_inputs.CopyFrom(plan.spec.default_inputs)
    admin_plan.closure.expected_outputs.CopyFrom(workflow_spec.template.interface.outputs)
    assert admin_plan.id.resource_type == ResourceType.LAUNCH_PLAN
    return admin_plan, workflow


class AdminServer:
    """The fake flyteadmin on 127.0.0.1:`port` until `stop()`."""

    def __init__(self, admin: FakeAdmin) -> None:
        self.admin = admin
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace=1).wait()
