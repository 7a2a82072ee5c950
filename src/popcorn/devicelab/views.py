"""Device lab API (`/api/v1/devicelab`): devices and reservations, the agent protocol, the
catalog and its query language, builds, runs (JUnit out and in), pipeline hooks, flaky
tests and predictions. Reads need viewer; changes operator; hooks (secrets) admin."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, request
from pydantic import BaseModel, ValidationError

from popcorn.app import role
from popcorn.context import current_actor
from popcorn.db import session_scope
from popcorn.devicelab import analysis, dispatch, hooks, protocol, scheduling, service
from popcorn.devicelab import query as q
from popcorn.devicelab import schemas as s
from popcorn.errors import InvalidInput
from popcorn.listing import parse_list_params

bp = APIBlueprint("devicelab", __name__, tag="devicelab")


def _base() -> str:
    return request.host_url.rstrip("/")


# --- devices ----------------------------------------------------------------------------------


@bp.get("/devices")
@bp.output(s.DevicePage)
@bp.doc(
    summary="Devices (filters: platform, family, pool, site, health, agent_state; q: device query)"
)
def list_devices() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        page = service.list_devices(session=session, params=params, where=params.q or "")
        return page.serialize(s.DeviceRead)


@bp.post("/devices")
@bp.input(s.DeviceCreate, arg_name="body")
@bp.output(s.DeviceRead, status_code=201)
@bp.doc(summary="Register a device by hand (agents register theirs themselves)")
def create_device(body: s.DeviceCreate) -> Any:
    with session_scope() as session:
        return service.create_device(session=session, spec=body)


@bp.get("/devices/<ref>")
@bp.output(s.DeviceRead)
@bp.doc(summary="One device")
def show_device(ref: str) -> Any:
    with session_scope(readonly=True) as session:
        return service.get_device(session=session, ref=ref)


@bp.patch("/devices/<ref>")
@bp.input(s.DeviceUpdate, arg_name="body")
@bp.output(s.DeviceRead)
@bp.doc(summary="Move a device, mark its health, change its tags")
def update_device(ref: str, body: s.DeviceUpdate) -> Any:
    with session_scope() as session:
        return service.update_device(session=session, ref=ref, spec=body)


@bp.delete("/devices/<ref>")
@bp.output({}, status_code=204)
@bp.doc(summary="Remove a device (refused while it runs tests)")
def delete_device(ref: str) -> Any:
    with session_scope() as session:
        service.delete_device(session=session, ref=ref)
    return ""


@bp.post("/devices/<ref>/reservation")
@bp.input(s.ReservationCreate, arg_name="body")
@bp.output(s.DeviceRead)
@bp.doc(summary="Reserve a device for yourself; the scheduler leaves it alone until it ends")
def reserve_device(ref: str, body: s.ReservationCreate) -> Any:
    with session_scope() as session:
        return service.reserve_device(
            session=session, ref=ref, who=current_actor().name, minutes=body.minutes, note=body.note
        )


@bp.delete("/devices/<ref>/reservation")
@bp.output(s.DeviceRead)
@bp.doc(summary="Release a reservation")
def release_device(ref: str) -> Any:
    with session_scope() as session:
        return service.release_device(session=session, ref=ref)


# --- agents -----------------------------------------------------------------------------------


def _signed(key: str, body: dict[str, Any]) -> Response:
    data = protocol.canonical(body)
    return Response(
        data,
        mimetype="application/json",
        headers={protocol.SIGNATURE_HEADER: protocol.sign(key, data)},
    )


def _parse(model: type[BaseModel], data: bytes) -> Any:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(
            f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}",
            details={"errors": len(exc.errors())},
        ) from None


@bp.post("/agents/register")
@bp.input(s.AgentRegister, arg_name="body")
@bp.output(s.AgentRegistered)
@bp.doc(summary="An agent registers its device and receives its key and the platform's id")
def register_agent(body: s.AgentRegister) -> Any:
    with session_scope() as session:
        return service.register_agent(session=session, spec=body)


@bp.post("/agents/<name>/poll")
@bp.doc(summary="An agent's signed heartbeat; the signed answer says what to stop and start")
def agent_poll(name: str) -> Response:
    data = request.get_data(cache=False)
    with session_scope() as session:
        device = service.verify_agent(
            session=session,
            name=name,
            body=data,
            signature=request.headers.get(protocol.SIGNATURE_HEADER),
        )
        beat = _parse(s.AgentHeartbeat, data)
        answer = dispatch.poll(
            session=session, device=device, running=beat.running, results=beat.results
        )
        key = service.agent_key(device)
    return _signed(key, answer)


@bp.post("/agents/<name>/results")
@bp.doc(summary="An agent's signed result of one execution")
def agent_result(name: str) -> Response:
    data = request.get_data(cache=False)
    with session_scope() as session:
        device = service.verify_agent(
            session=session,
            name=name,
            body=data,
            signature=request.headers.get(protocol.SIGNATURE_HEADER),
        )
        result = _parse(s.AgentResult, data)
        execution = dispatch.report_result(session=session, device=device, result=result)
        answer = {
            "platform_id": service.platform_id(),
            "device": device.name,
            "execution": execution.id,
            "status": execution.status,
        }
        key = service.agent_key(device)
    return _signed(key, answer)


# --- catalog ----------------------------------------------------------------------------------


@bp.get("/tests")
@bp.output(s.TestPage)
@bp.doc(summary="The test catalog (q: a test query, e.g. component:playback and duration<600)")
def list_tests() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return service.list_tests(session=session, params=params, where=params.q or "").serialize(
            s.TestRead
        )


@bp.post("/tests")
@bp.input(s.CatalogImport, arg_name="body")
@bp.doc(summary="Add or update tests by name")
def import_tests(body: s.CatalogImport) -> dict[str, int]:
    with session_scope() as session:
        return service.upsert_tests(session=session, specs=body.tests)


@bp.get("/tests/<ref>")
@bp.output(s.TestRead)
@bp.doc(summary="One test")
def show_test(ref: str) -> Any:
    with session_scope(readonly=True) as session:
        return service.get_test(session=session, ref=ref)


@bp.post("/query")
@role("viewer")
@bp.input(s.QueryCheck, arg_name="body")
@bp.doc(summary="Check a query; a query that does not parse is a 422 with its position")
def check_query(body: s.QueryCheck) -> dict[str, Any]:
    fields = q.TEST_FIELDS if body.target == "tests" else q.DEVICE_FIELDS
    q.parse(body.query, fields)
    return {"query": body.query, "target": body.target, "valid": True}


@bp.get("/suites")
@bp.output(s.SuitePage)
@bp.doc(summary="Suites")
def list_suites() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return service.list_suites(
            session=session, params=parse_list_params(request.args)
        ).serialize(s.SuiteRead)


@bp.post("/suites")
@bp.input(s.SuiteCreate, arg_name="body")
@bp.output(s.SuiteRead, status_code=201)
@bp.doc(summary="A named test query")
def create_suite(body: s.SuiteCreate) -> Any:
    with session_scope() as session:
        return service.create_suite(session=session, spec=body)


# --- builds and runs --------------------------------------------------------------------------


@bp.get("/builds")
@bp.output(s.BuildPage)
@bp.doc(summary="Builds")
def list_builds() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return scheduling.list_builds(
            session=session, params=parse_list_params(request.args)
        ).serialize(s.BuildRead)


@bp.post("/builds")
@bp.input(s.BuildCreate, arg_name="body")
@bp.output(s.BuildRead, status_code=201)
@bp.doc(summary="A build: app version and the change it carries")
def create_build(body: s.BuildCreate) -> Any:
    with session_scope() as session:
        return scheduling.create_build(session=session, spec=body)


@bp.post("/builds/<int:build_id>/junit")
@bp.output(s.RunRead, status_code=201)
@bp.doc(
    summary="Import a JUnit XML report (any runner) as a finished run of a build (?family=&device=)"
)
def import_junit(build_id: int) -> Any:
    with session_scope() as session:
        return analysis.import_junit(
            session=session,
            build_id=build_id,
            data=request.get_data(cache=False),
            family=request.args.get("family", "")[:200],
            device=request.args.get("device", "")[:200],
        )


@bp.get("/runs")
@bp.output(s.RunPage)
@bp.doc(summary="Runs (filters: status, build_id, suite)")
def list_runs() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return scheduling.list_runs(
            session=session, params=parse_list_params(request.args)
        ).serialize(s.RunRead)


@bp.post("/runs")
@bp.input(s.RunCreate, arg_name="body")
@bp.output(s.RunRead, status_code=201)
@bp.doc(summary="Run a suite of a build on a device set (select=predicted: at a recall target)")
def start_run(body: s.RunCreate) -> Any:
    with session_scope() as session:
        return scheduling.start_run(session=session, spec=body)


@bp.get("/runs/<int:run_id>")
@bp.output(s.RunRead)
@bp.doc(summary="One run with its summary")
def show_run(run_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return scheduling.get_run(session=session, ref=run_id)


@bp.post("/runs/<int:run_id>/cancel")
@bp.output(s.RunRead)
@bp.doc(summary="Cancel a run (agents are told to stop its tests)")
def cancel_run(run_id: int) -> Any:
    with session_scope() as session:
        return scheduling.cancel_run(session=session, ref=run_id)


@bp.get("/runs/<int:run_id>/status")
@bp.output(s.RunStatus)
@bp.doc(summary="What a pipeline polls: stage_status RUNNING, SUCCEEDED or TERMINAL, with links")
def run_status(run_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return scheduling.run_status(session=session, ref=run_id, base_url=_base())


@bp.get("/runs/<int:run_id>/executions")
@bp.output(s.ExecutionPage)
@bp.doc(summary="Every attempt of every test of a run (filters: status, test_name, flaky...)")
def list_executions(run_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = scheduling.list_executions(
            session=session, run=run_id, params=parse_list_params(request.args)
        )
        return page.serialize(s.ExecutionRead)


@bp.get("/runs/<int:run_id>/junit")
@bp.doc(summary="The run's JUnit XML report")
def run_junit(run_id: int) -> Response:
    with session_scope(readonly=True) as session:
        xml = analysis.junit_report(session=session, run=run_id, base_url=_base())
    return Response(xml, mimetype="application/xml")


# --- analysis ---------------------------------------------------------------------------------


@bp.get("/flaky")
@bp.doc(summary="Tests that passed and failed on the same build, most often first")
def flaky() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return {"items": analysis.flaky_tests(session=session)}


@bp.post("/predictions")
@role("viewer")
@bp.input(s.SelectRequest, arg_name="body")
@bp.doc(summary="Failure probability of every (test, family) for a build, and the selection")
def predictions(body: s.SelectRequest) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return analysis.predictions(
            session=session,
            build_id=body.build_id,
            query=body.query,
            suite=body.suite,
            devices=body.devices,
            recall=body.recall,
        )


@bp.post("/sweep")
@bp.doc(summary="Mark silent devices offline, reschedule their tests, time out late tests")
def sweep() -> dict[str, int]:
    with session_scope() as session:
        return scheduling.sweep(session=session)


# --- pipeline hooks ---------------------------------------------------------------------------


@bp.get("/hooks")
@role("admin")
@bp.output(s.HookPage)
@bp.doc(summary="Pipeline hooks")
def list_hooks() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return hooks.list_hooks(session=session, params=parse_list_params(request.args)).serialize(
            s.HookRead
        )


@bp.post("/hooks")
@role("admin")
@bp.input(s.HookCreate, arg_name="body")
@bp.output(s.HookCreated, status_code=201)
@bp.doc(summary="A pipeline hook; its signing secret is shown once")
def create_hook(body: s.HookCreate) -> Any:
    with session_scope() as session:
        return hooks.create_hook(session=session, spec=body)


@bp.delete("/hooks/<name>")
@role("admin")
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a hook")
def delete_hook(name: str) -> Any:
    with session_scope() as session:
        hooks.delete_hook(session=session, ref=name)
    return ""


@bp.post("/hooks/<name>/trigger")
@bp.output(s.RunStatus, status_code=202)
@bp.doc(
    summary="A webhook stage starts a run (body signed: X-Popcorn-Signature: sha256=HMAC)",
    description="Answers with the run's status and `report_url`; poll "
    "`/runs/<id>/status` (statusJsonPath `$.stage_status`) or give `callback_url`.",
)
def trigger_hook(name: str) -> Any:
    data = request.get_data(cache=False)
    with session_scope() as session:
        run = hooks.trigger(
            session=session,
            name=name,
            body=data,
            signature=request.headers.get(hooks.HOOK_SIGNATURE),
        )
        session.flush()
        return scheduling.run_status(session=session, ref=run.id, base_url=_base())
