from __future__ import annotations

import pytest

from agents import services as agent_services


@pytest.fixture
def make_agent(organization, owner):
    def make(name: str, organization_=None):
        return agent_services.agent_create(
            organization=organization_ or organization, actor=owner, name=name, system_prompt="Do the task.",
            model="demo", tools=[],
        )

    return make


@pytest.fixture
def agent(make_agent):
    return make_agent("Reporter")
