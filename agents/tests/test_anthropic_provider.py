"""The Anthropic provider, driven through the real SDK against the loopback fake Messages API."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from agents.llm import pricing
from agents.llm.anthropic import AnthropicProvider
from agents.llm.base import ChatMessage, ModelError, ToolCall, ToolSpec
from tests.fakes.anthropic_server import (
    NO_INPUT,
    FakeAnthropicServer,
    delay,
    disconnect,
    error,
    overloaded,
    text,
    tool_use,
    tool_uses,
)

KEY = "sk-ant-test-provider-key"
CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression.",
    input_schema={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)


@pytest.fixture
def fake() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def configure(fake, settings, monkeypatch):
    """Point the SDK at the fake; returns a function that builds a fresh shared provider."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    settings.ANTHROPIC_API_KEY = KEY
    settings.ANTHROPIC_MAX_RETRIES = 2
    settings.ANTHROPIC_MAX_TOKENS = 1024

    def build(**overrides) -> AnthropicProvider:
        for name, value in overrides.items():
            setattr(settings, name, value)
        AnthropicProvider.reset_shared()
        return AnthropicProvider.shared()

    yield build
    AnthropicProvider.reset_shared()


@pytest.fixture
def provider(configure) -> AnthropicProvider:
    return configure()


def ask(provider: AnthropicProvider, messages: list[ChatMessage] | None = None, *, model: str = "claude-sonnet-4-5",
        timeout: float = 10.0):
    return provider.complete(
        model=model,
        system="You are a careful assistant.",
        messages=messages or [ChatMessage.user("What is 2+2?")],
        tools=[CALCULATOR],
        timeout=timeout,
    )


def test_it_parses_a_text_answer_with_usage_and_cost(provider, fake):
    fake.enqueue(text("It is 4.", input_tokens=1000, output_tokens=200))

    response = ask(provider)

    assert response.text == "It is 4."
    assert response.tool_calls == ()
    assert response.stop_reason == "end_turn"
    assert response.usage.input_tokens == 1000
    assert response.usage.output_tokens == 200
    assert response.usage.cost_usd == Decimal("0.006")  # 1000 * $3/M + 200 * $15/M


def test_it_sends_the_model_system_prompt_tools_and_token_limit(provider, fake):
    ask(provider, model="claude-haiku-4-5")

    [request] = fake.message_requests
    assert request.body["model"] == "claude-haiku-4-5"
    assert request.body["max_tokens"] == 1024
    assert request.system == "You are a careful assistant."
    assert request.body["tools"] == [
        {"name": "calculator", "description": CALCULATOR.description, "input_schema": CALCULATOR.input_schema}
    ]
    assert request.messages == [{"role": "user", "content": "What is 2+2?"}]


def test_it_turns_tool_use_into_tool_calls(provider, fake):
    fake.enqueue(tool_use("calculator", {"expression": "2+2"}, text="Let me compute.", id="toolu_one"))

    response = ask(provider)

    assert response.text == "Let me compute."
    assert response.tool_calls == (ToolCall(id="toolu_one", name="calculator", arguments={"expression": "2+2"}),)
    assert response.stop_reason == "tool_use"


def test_it_returns_parallel_tool_calls_in_order(provider, fake):
    fake.enqueue(tool_uses([("calculator", {"expression": "1+1"}), ("calculator", {"expression": "2*3"})]))

    response = ask(provider)

    assert [call.arguments for call in response.tool_calls] == [{"expression": "1+1"}, {"expression": "2*3"}]
    assert response.tool_calls[0].id != response.tool_calls[1].id


def test_it_sends_tool_results_merged_into_one_user_message(provider, fake):
    first = ToolCall(id="toolu_a", name="calculator", arguments={"expression": "1+1"})
    second = ToolCall(id="toolu_b", name="calculator", arguments={"expression": "1/0"})
    conversation = [
        ChatMessage.user("Compute both."),
        ChatMessage.assistant("Computing.", (first, second)),
        ChatMessage.tool(call=first, content="2"),
        ChatMessage.tool(call=second, content="division by zero", is_error=True),
    ]

    response = ask(provider, conversation)

    assert response.text == "Done."  # the fake accepted the conversation as the real API would
    assert fake.message_requests[0].messages == [
        {"role": "user", "content": "Compute both."},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Computing."},
                {"type": "tool_use", "id": "toolu_a", "name": "calculator", "input": {"expression": "1+1"}},
                {"type": "tool_use", "id": "toolu_b", "name": "calculator", "input": {"expression": "1/0"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "2", "is_error": False},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "division by zero", "is_error": True},
            ],
        },
    ]


def test_it_sends_an_assistant_turn_without_text_as_tool_use_only_and_joins_a_following_user_note(provider, fake):
    call = ToolCall(id="toolu_c", name="calculator", arguments={"expression": "3*3"})
    conversation = [
        ChatMessage.user("Go."),
        ChatMessage.assistant("", (call,)),
        ChatMessage.tool(call=call, content="9"),
        ChatMessage.user("You have one step left."),
    ]

    ask(provider, conversation)

    messages = fake.message_requests[0].messages
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": "toolu_c", "name": "calculator", "input": {"expression": "3*3"}}
    ]
    assert messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_c", "content": "9", "is_error": False},
            {"type": "text", "text": "You have one step left."},
        ],
    }


def test_it_retries_an_overloaded_api_and_succeeds(provider, fake):
    # No retry-after here: this exercises the SDK's own backoff (about half a second).
    fake.enqueue(overloaded(), text("Recovered."))

    response = ask(provider)

    assert response.text == "Recovered."
    requests = fake.message_requests
    assert len(requests) == 2
    assert requests[1].headers["x-stainless-retry-count"] == "1"


def test_it_raises_model_error_with_the_provider_message_when_retries_are_exhausted(provider, fake):
    fake.enqueue(overloaded(retry_after_ms=10), overloaded(retry_after_ms=10), overloaded(retry_after_ms=10))

    with pytest.raises(ModelError, match=r"^Anthropic API error 529 overloaded_error: Overloaded \(request id req_"):
        ask(provider)

    assert len(fake.message_requests) == 3  # the first try and ANTHROPIC_MAX_RETRIES=2 retries


def test_it_does_not_retry_a_rejected_api_key_and_never_repeats_it(configure, fake):
    provider = configure(ANTHROPIC_API_KEY="sk-ant-wrong-key")

    with pytest.raises(ModelError, match="Anthropic API error 401 authentication_error: invalid x-api-key") as caught:
        ask(provider)

    assert "sk-ant-wrong-key" not in str(caught.value)
    assert len(fake.message_requests) == 1


def test_it_reports_a_request_the_api_rejects_without_retrying(provider, fake):
    call = ToolCall(id="toolu_orphan", name="calculator", arguments={"expression": "1"})
    conversation = [ChatMessage.user("Go."), ChatMessage.assistant("", (call,)), ChatMessage.user("And?")]

    with pytest.raises(ModelError, match=r"400 invalid_request_error: messages\.1: `tool_use` ids were found"):
        ask(provider, conversation)

    assert len(fake.message_requests) == 1


def test_it_passes_an_error_type_it_does_not_know_through(provider, fake):
    fake.enqueue(error(402, "billing_error", "Your credit balance is too low."))

    with pytest.raises(ModelError, match="402 billing_error: Your credit balance is too low."):
        ask(provider)


@pytest.mark.parametrize(
    ("raw_input", "arguments"),
    [
        (NO_INPUT, {}),
        (None, {}),
        (["2+2"], {}),
        ("not json", {}),
        ('{"expression": "2+2"}', {"expression": "2+2"}),
        ({"formula": 4}, {"formula": 4}),  # wrong for the schema, but the loop's validation says so
    ],
)
def test_a_malformed_tool_use_still_comes_back_as_a_tool_call(provider, fake, raw_input, arguments):
    fake.enqueue(tool_use("calculator", raw_input, id="toolu_bad"))

    response = ask(provider)

    assert response.tool_calls == (ToolCall(id="toolu_bad", name="calculator", arguments=arguments),)


def test_it_raises_model_error_when_the_api_drops_the_connection(configure, fake):
    provider = configure(ANTHROPIC_MAX_RETRIES=0)
    fake.enqueue(disconnect())

    with pytest.raises(ModelError, match="Could not reach the Anthropic API"):
        ask(provider)


def test_it_raises_model_error_when_the_api_is_slower_than_the_timeout(configure, fake):
    provider = configure(ANTHROPIC_MAX_RETRIES=0)
    fake.enqueue(delay(5, text("Too late.")))

    with pytest.raises(ModelError, match="timed out after 0.3s"):
        ask(provider, timeout=0.3)


def test_shared_hands_every_thread_the_same_provider(configure):
    configure()
    AnthropicProvider.reset_shared()
    seen: list[AnthropicProvider] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        seen.append(AnthropicProvider.shared())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({id(provider) for provider in seen}) == 1


def test_shared_builds_a_new_client_when_the_configuration_changes(configure, settings):
    before = configure()
    settings.ANTHROPIC_MAX_RETRIES = 0

    after = AnthropicProvider.shared()

    assert after is not before
    assert after.client.max_retries == 0


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5", Decimal("18")),
        ("claude-sonnet-4-5-20250929", Decimal("18")),
        ("claude-haiku-4-5-20251001", Decimal("6")),
        ("claude-opus-4-1", Decimal("90")),
        ("claude-opus-4-20250514", Decimal("90")),
        ("claude-3-5-haiku-latest", Decimal("4.80")),
        ("claude-sonnet-4-0", Decimal("18")),
        ("claude-opus-4-5", Decimal("30")),
        ("claude-opus-4-6", Decimal("30")),  # its own price, not its older namesake's
        ("claude-opus-9-9", Decimal("0")),  # unknown models cost nothing rather than a guess
        ("gpt-4o", Decimal("0")),
        ("claude-sonnet-45", Decimal("0")),
    ],
)
def test_pricing_matches_dated_ids_and_aliases_and_unknown_models_cost_nothing(model, expected):
    assert pricing.cost_usd(model, 1_000_000, 1_000_000) == expected


def test_the_fake_rejects_requests_without_a_key_or_a_token_limit(fake):
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    version = {"anthropic-version": "2023-06-01"}

    no_key = httpx.post(f"{fake.url}/v1/messages", json=body, headers=version)
    no_limit = httpx.post(
        f"{fake.url}/v1/messages",
        json={k: v for k, v in body.items() if k != "max_tokens"},
        headers={**version, "x-api-key": KEY},
    )

    assert no_key.status_code == 401
    assert no_key.json()["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}
    assert no_key.headers["request-id"].startswith("req_")
    assert no_limit.status_code == 400
    assert no_limit.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


def test_the_fake_serves_routed_replies_to_matching_requests_and_done_when_nothing_is_queued(provider, fake):
    fake.enqueue(text("For the tortoise."), when="tortoise")
    fake.enqueue(text("For anyone."))

    hare = ask(provider, [ChatMessage.user("Race the hare.")])
    tortoise = ask(provider, [ChatMessage.user("Race the tortoise.")])
    stray = ask(provider, [ChatMessage.user("Anything else?")])

    assert (hare.text, tortoise.text, stray.text) == ("For anyone.", "For the tortoise.", "Done.")
    assert fake.pending == 0
