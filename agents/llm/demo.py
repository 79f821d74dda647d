"""The offline demo model: deterministic, no network, clearly labelled.

It reads the goal, picks the agent's tools that fit (arithmetic → calculator, a URL → web_fetch,
date or time → current_time, "issues/pull requests in owner/repo" → GitHub, "channels" → Slack),
calls each once with arguments parsed from the goal, then writes a final answer quoting what the
tools returned. It drives the same loop and tools (connections included) as Claude does.
"""

from __future__ import annotations

import re
import uuid
import zoneinfo

from agents.llm.base import ChatMessage, ModelResponse, ToolCall, ToolSpec, Usage

LABEL = "Offline demo model"

_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_WORDS = [
    (re.compile(r"\bdivided by\b", re.I), "/"),
    (re.compile(r"\b(times|multiplied by)\b", re.I), "*"),
    (re.compile(r"\bplus\b", re.I), "+"),
    (re.compile(r"\bminus\b", re.I), "-"),
    (re.compile(r"\bto the power of\b", re.I), "**"),
]
_EXPRESSION = re.compile(r"[-+(]*\d[\d.\s]*(?:(?:\*\*|[-+*/%^()])[\s(]*[-+]?\d[\d.\s]*\)*\s*)+")
_REPO = re.compile(r"(?<![\w/.-])([A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9_.-]+)(?![\w/])")
_ISSUES = re.compile(r"\bissues?\b", re.I)
_PULLS = re.compile(r"\b(pull requests?|PRs?)\b", re.I)
_CHANNELS = re.compile(r"\bchannels?\b", re.I)
_TIME_WORDS = re.compile(r"\b(time|date|day|today|clock|now)\b", re.I)
_TIMEZONE = re.compile(r"\b([A-Z][a-z]+(?:_[A-Z][a-z]+)?/[A-Z][A-Za-z_]+(?:/[A-Z][A-Za-z_]+)?)\b")
_CITY_ZONES = {
    "tokyo": "Asia/Tokyo", "london": "Europe/London", "paris": "Europe/Paris", "berlin": "Europe/Berlin",
    "zurich": "Europe/Zurich", "new york": "America/New_York", "san francisco": "America/Los_Angeles",
    "los angeles": "America/Los_Angeles", "sydney": "Australia/Sydney", "singapore": "Asia/Singapore",
}


def _expression(goal: str) -> str | None:
    text = goal
    for pattern, symbol in _WORDS:
        text = pattern.sub(f" {symbol} ", text)
    candidates = [m.group(0).strip() for m in _EXPRESSION.finditer(text)]
    candidates = [c.rstrip(".").strip() for c in candidates if any(op in c for op in "+-*/%^")]
    return " ".join(max(candidates, key=len).split()) if candidates else None


def _timezone(goal: str) -> str:
    match = _TIMEZONE.search(goal)
    if match and match.group(1) in zoneinfo.available_timezones():
        return match.group(1)
    lowered = goal.lower()
    for city, zone in _CITY_ZONES.items():
        if city in lowered:
            return zone
    return "UTC"


def plan(goal: str, tool_names: set[str]) -> list[tuple[str, dict]]:
    """The tool calls the demo model will make for this goal, in order."""
    calls: list[tuple[str, dict]] = []
    url = _URL.search(goal)
    if url and "web_fetch" in tool_names:
        calls.append(("web_fetch", {"url": url.group(0).rstrip(".,;")}))
    goal_without_urls = _URL.sub(" ", goal)
    expression = _expression(goal_without_urls)
    if expression and "calculator" in tool_names:
        calls.append(("calculator", {"expression": expression}))
    if _TIME_WORDS.search(goal_without_urls) and "current_time" in tool_names:
        calls.append(("current_time", {"timezone": _timezone(goal_without_urls)}))
    repo = _REPO.search(goal_without_urls)
    if repo and _PULLS.search(goal_without_urls) and "github_list_pull_requests" in tool_names:
        calls.append(("github_list_pull_requests", {"repo": repo.group(1).rstrip(".")}))
    elif repo and _ISSUES.search(goal_without_urls) and "github_list_issues" in tool_names:
        calls.append(("github_list_issues", {"repo": repo.group(1).rstrip(".")}))
    if _CHANNELS.search(goal_without_urls) and "slack_list_channels" in tool_names:
        calls.append(("slack_list_channels", {}))
    return calls


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class DemoProvider:
    def complete(
        self,
        *,
        model: str,
        system: str,
        messages: list[ChatMessage],
        tools: list[ToolSpec],
        timeout: float,
    ) -> ModelResponse:
        goal = messages[0].content if messages else ""
        observations = [m for m in messages if m.role == "tool"]
        steps = plan(goal, {t.name for t in tools})
        usage = Usage(input_tokens=sum(_tokens(m.content) for m in messages) + _tokens(system), output_tokens=0)

        if len(observations) < len(steps):
            name, arguments = steps[len(observations)]
            thought = {
                "calculator": f"This needs arithmetic, so I'll use the calculator on `{arguments.get('expression')}`.",
                "web_fetch": f"I'll fetch {arguments.get('url')} to read it.",
                "current_time": f"I'll check the current time in {arguments.get('timezone')}.",
                "github_list_issues": f"I'll list the open issues of {arguments.get('repo')} on GitHub.",
                "github_list_pull_requests": f"I'll list the open pull requests of {arguments.get('repo')} on GitHub.",
                "slack_list_channels": "I'll list the Slack channels.",
            }.get(name, f"I'll call {name}.")
            call = ToolCall(id=f"demo_{uuid.uuid4().hex[:12]}", name=name, arguments=arguments)
            return ModelResponse(
                text=thought,
                tool_calls=(call,),
                usage=Usage(input_tokens=usage.input_tokens, output_tokens=_tokens(thought)),
                stop_reason="tool_use",
            )

        answer = self._answer(goal, steps, observations)
        return ModelResponse(
            text=answer,
            usage=Usage(input_tokens=usage.input_tokens, output_tokens=_tokens(answer)),
            stop_reason="end_turn",
        )

    @staticmethod
    def _answer(goal: str, steps: list[tuple[str, dict]], observations: list[ChatMessage]) -> str:
        if not steps:
            return (
                f"[{LABEL}] I can't reason about this goal offline: \"{goal.strip()[:200]}\". "
                "Give me arithmetic, a URL or a question about the date or time and the matching tool, "
                "or set ANTHROPIC_API_KEY to use Claude."
            )
        lines = [f"[{LABEL}] Here is what I found:"]
        for (name, arguments), observation in zip(steps, observations, strict=False):
            text = observation.content.strip()
            if name == "calculator" and not observation.is_error:
                lines.append(f"- {arguments['expression']} = {text}")
            elif observation.is_error:
                lines.append(f"- {name} failed: {text[:300]}")
            else:
                excerpt = text if len(text) <= 500 else text[:500] + "…"
                lines.append(f"- {name}: {excerpt}")
        return "\n".join(lines)
