"""Agentry's MCP server at /mcp, driven by the official `mcp` SDK client over real HTTP against the
live stack (uvicorn + a Celery worker); agents run on the offline demo model."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import httpx2
import pytest
from mcp import ClientSession, MCPError
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from accounts import services as account_services
from accounts.models import AuditLog, Membership, Quota
from agents import services as agent_services
from agents.models import Run
from integrations.mcp_server import agent_tool_name

pytestmark = pytest.mark.django_db(transaction=True)

READ_TOOLS = {"calculator", "current_time", "web_fetch"}


def _agent(organization, owner, name: str, *, shared: bool = True, max_steps: int = 5):
    agent = agent_services.agent_create(
        organization=organization, actor=owner, name=name, description=f"{name} does arithmetic.",
        system_prompt="Use the calculator for arithmetic.", model="demo", tools=["calculator"],
        max_steps=max_steps, timeout_seconds=60,
    )
    if shared:
        agent_services.agent_share(agent=agent, team=None, can_edit=False, actor=owner)
    return agent


def _key(user, organization, **kwargs) -> str:
    return account_services.api_token_create(user=user, organization=organization, **kwargs)[1]


def mcp(live, key: str, use):
    """Runs `use(session)` in an initialized SDK session authenticated with `key`."""

    async def go():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            async with streamable_http_client(f"{live.url}/mcp", http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await use(session)

    return asyncio.run(go())


def _names(result) -> set[str]:
    return {tool.name for tool in result.tools}


@pytest.fixture
def calc(organization, owner):
    return _agent(organization, owner, "Calc")


@pytest.fixture
def operator(member_with_role):
    return member_with_role(Membership.Role.OPERATOR)


def test_it_lists_the_agents_the_key_may_run_and_the_read_tools(live, organization, other_organization, owner,
                                                                 outsider, operator, calc):
    private = _agent(organization, owner, "Owner's private helper", shared=False)
    elsewhere = _agent(other_organization, outsider, "Calc")

    listed = mcp(live, _key(operator, organization), lambda s: s.list_tools())

    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {agent_tool_name(calc)} | READ_TOOLS, "not the private agent, not Globex's"
    assert agent_tool_name(private) not in tools and agent_tool_name(elsewhere) not in tools
    tool = tools[agent_tool_name(calc)]
    assert tool.name == f"agent_calc_{calc.id.hex[:8]}" and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool.name)
    assert tool.description.startswith("Calc does arithmetic.")
    assert tool.input_schema["required"] == ["goal"]
    wait = tool.input_schema["properties"]["wait_seconds"]
    assert (wait["type"], wait["minimum"], wait["maximum"], wait["default"]) == ("integer", 1, 300, 60)
    assert tool.annotations.read_only_hint is False
    assert tools["calculator"].annotations.read_only_hint is True
    assert tools["calculator"].input_schema["required"] == ["expression"]


def test_a_long_agent_name_still_makes_a_valid_tool_name(organization, owner):
    agent = _agent(organization, owner, "Quarterly Revenue — Réconciliation & Forecast Assistant for the EMEA Team")

    name = agent_tool_name(agent)

    assert len(name) <= 64 and re.fullmatch(r"[a-zA-Z0-9_-]+", name) and name.endswith(agent.id.hex[:8])


def test_calling_an_agent_runs_it_and_the_run_is_a_readable_resource(live, organization, operator, calc):
    key = _key(operator, organization)
    name = agent_tool_name(calc)

    async def use(session):
        result = await session.call_tool(name, {"goal": "What is 17 * 23?", "wait_seconds": 60})
        uri = result.structured_content["uri"]
        return result, await session.list_resources(), await session.read_resource(uri)

    result, resources, read = mcp(live, key, use)

    assert result.is_error is False
    assert "391" in result.content[0].text
    run = Run.objects.get()
    assert run.created_by == operator and run.status == Run.Status.SUCCEEDED
    uri = f"agentry://runs/{run.id}"
    assert [c.uri for c in result.content if c.type == "resource_link"] == [uri]
    assert result.structured_content == {"run_id": str(run.id), "status": "succeeded", "answer": run.answer,
                                         "error": "", "uri": uri}
    audit = AuditLog.objects.get(action="run.start", target_id=str(run.id))
    assert audit.actor == operator and audit.ip == "127.0.0.1" and audit.request_id
    assert [(r.uri, r.name, r.mime_type) for r in resources.resources] == [
        (uri, "Calc — succeeded", "application/json")
    ]
    body = json.loads(read.contents[0].text)
    assert body["id"] == str(run.id) and body["agent"]["name"] == "Calc" and body["status"] == "succeeded"
    assert body["goal"] == "What is 17 * 23?" and "391" in body["answer"] and body["finished_at"]
    tool_end = next(e for e in body["events"] if e["type"] == "tool_end")
    assert tool_end == {**tool_end, "tool": "calculator", "is_error": False, "content": "391"}


def test_a_failed_run_comes_back_as_an_error_result_with_its_error(live, organization, owner, operator):
    one_step = _agent(organization, owner, "Hasty", max_steps=1)

    result = mcp(live, _key(operator, organization),
                 lambda s: s.call_tool(agent_tool_name(one_step), {"goal": "What is 6 * 7?"}))

    assert result.is_error is True
    assert result.content[0].text == "The run failed: Stopped after 1 steps without a final answer."
    assert result.structured_content["status"] == "failed"


def test_a_read_tool_answers_directly_and_bad_arguments_come_back_as_an_error_result(live, organization, operator):
    async def use(session):
        return (await session.call_tool("calculator", {"expression": "2 + 3 * 4"}),
                await session.call_tool("calculator", {"expr": "1"}))

    good, bad = mcp(live, _key(operator, organization), use)

    assert good.is_error is False and good.content[0].text == "14"
    assert bad.is_error is True and "invalid arguments" in bad.content[0].text


def test_a_request_without_a_key_or_with_a_revoked_one_gets_401_and_a_get_gets_405(live, organization, operator):
    token, key = account_services.api_token_create(user=operator, organization=organization)
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream"}

    missing = httpx.post(f"{live.url}/mcp", json=ping, headers=headers)
    wrong = httpx.post(f"{live.url}/mcp/", json=ping, headers=headers | {"Authorization": "Bearer agt_nope"})
    assert mcp(live, key, lambda s: s.send_ping()) is not None
    get = httpx.get(f"{live.url}/mcp", headers=headers | {"Authorization": f"Bearer {key}"})
    assert get.status_code == 405 and get.headers["Allow"] == "POST", "stateless: no stream to open"
    account_services.api_token_revoke(token=token, actor=operator)
    revoked = httpx.post(f"{live.url}/mcp", json=ping, headers=headers | {"Authorization": f"Bearer {key}"})

    for response in (missing, wrong, revoked):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"] == "not_authenticated" and response.json()["request_id"]


def test_another_organizations_key_can_neither_see_nor_call_nor_read(live, organization, other_organization,
                                                                     operator, outsider, calc):
    mcp(live, _key(operator, organization),
        lambda s: s.call_tool(agent_tool_name(calc), {"goal": "What is 1 + 1?"}))
    run = Run.objects.get()

    async def use(session):
        listed = await session.list_tools()
        with pytest.raises(MCPError, match="Unknown tool"):
            await session.call_tool(agent_tool_name(calc), {"goal": "What is 2 + 2?"})
        with pytest.raises(MCPError, match="not found"):
            await session.read_resource(f"agentry://runs/{run.id}")
        return listed, await session.list_resources()

    listed, resources = mcp(live, _key(outsider, other_organization), use)

    assert _names(listed) == READ_TOOLS
    assert resources.resources == []
    assert Run.objects.count() == 1


def test_a_viewer_sees_no_agent_tools_and_calling_one_is_refused(live, organization, member_with_role, calc):
    viewer = member_with_role(Membership.Role.VIEWER)

    async def use(session):
        return await session.list_tools(), await session.call_tool(agent_tool_name(calc), {"goal": "What is 1 + 1?"})

    listed, called = mcp(live, _key(viewer, organization), use)

    assert _names(listed) == READ_TOOLS
    assert called.is_error is True and "Permission denied: your role (Viewer)" in called.content[0].text
    assert not Run.objects.exists()


def test_a_key_without_the_run_scope_or_over_quota_is_refused_with_an_error_result(live, organization, operator,
                                                                                   calc):
    read_only = _key(operator, organization, scopes=["read"])
    Quota.objects.create(organization=organization, user=operator, runs_per_month=0)

    async def call(session):
        return await session.call_tool(agent_tool_name(calc), {"goal": "What is 1 + 1?"})

    no_scope = mcp(live, read_only, call)
    over_quota = mcp(live, _key(operator, organization), call)

    assert no_scope.is_error is True and "lacks the 'run' scope" in no_scope.content[0].text
    assert over_quota.is_error is True and "Monthly quota reached" in over_quota.content[0].text
    assert not Run.objects.exists()


def test_a_client_on_the_2026_protocol_lists_and_calls_without_a_handshake(live, organization, operator, calc):
    key = _key(operator, organization)

    async def go():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            async with Client(streamable_http_client(f"{live.url}/mcp", http_client=http)) as client:
                return (client.session.protocol_version, await client.list_tools(),
                        await client.call_tool("calculator", {"expression": "6 * 7"}))

    version, listed, called = asyncio.run(go())

    assert version == "2026-07-28"
    assert agent_tool_name(calc) in _names(listed)
    assert called.content[0].text == "42"
