"""Action parameters rendered from events, inside a sandbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from popcorn.events.formats import Event
from popcorn.events.templating import (
    Template,
    TemplateError,
    compile_params,
    event_context,
)

EVENT = Event(
    id="ev-1",
    type="alertmanager.alert.firing",
    source="am",
    subject="CacheDiskFull",
    time=datetime(2024, 5, 6, 7, 55, tzinfo=UTC),
    labels={"instance": "oca-ams-017:9100", "severity": "critical"},
    data={"count": 3, "annotations": {"summary": "disk full"}, "hosts": ["a", "b"]},
)
CONTEXT = event_context(EVENT)


def render(params: Any) -> Any:
    return compile_params(params, "actions[0].params").render(CONTEXT)


def test_nested_params_render() -> None:
    params = {
        "url": "https://hooks.example.net/{{ labels.severity }}",
        "body": {
            "text": "{{ subject }} on {{ labels.instance.split(':')[0] }}: "
            "{{ data.annotations.summary }}",
            "links": ["{{ event.id }}", "static", 7, None, True],
        },
        "at": "{{ time }}",
    }
    assert render(params) == {
        "url": "https://hooks.example.net/critical",
        "body": {
            "text": "CacheDiskFull on oca-ams-017: disk full",
            "links": ["ev-1", "static", 7, None, True],
        },
        "at": "2024-05-06T07:55:00Z",
    }


def test_a_lone_expression_keeps_its_type() -> None:
    assert render({"n": "{{ data.count + 1 }}"}) == {"n": 4}
    assert render({"hosts": "{{ data.hosts }}"}) == {"hosts": ["a", "b"]}
    assert render({"a": "{{ data.annotations }}"}) == {"a": {"summary": "disk full"}}
    assert render({"text": "{{ data.count }} hosts"}) == {"text": "3 hosts"}
    assert render({"s": "{{- labels.severity -}}"}) == {"s": "critical"}


def test_defaults_and_filters() -> None:
    assert render("{{ labels.team | default('noc') }}") == "noc"
    assert render("{{ labels.severity | upper }}") == "CRITICAL"
    assert render("{{ data | tojson }}").startswith("{")
    assert render("{% for h in data.hosts %}{{ h }},{% endfor %}") == "a,b,"


def test_rendering_returns_fresh_structures() -> None:
    compiled = compile_params({"list": [1, 2], "host": "{{ data.hosts }}"})
    first = compiled.render(CONTEXT)
    first["list"].append(3)
    first["host"].append("c")
    assert compiled.render(CONTEXT) == {"list": [1, 2], "host": ["a", "b"]}
    assert EVENT.data["hosts"] == ["a", "b"]


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ ''.__class__ }}", "unsafe"),
        ("x {{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
        ("{{ labels.__class__ }}", "unsafe"),
        ("{{ data.hosts.append('c') }}", "unsafe"),
        ("{{ labels.update({'a': 1}) }}", "unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "unsafe"),
        ("{{ 'x' * 10000000 }}", "too large"),
        ("{{ 9 ** 999999 }}", "too large"),
        ("{{ range(10000000) | list }}", "Range too big"),
    ],
)
def test_sandbox_blocks_internals_and_mutation(template: str, reason: str) -> None:
    with pytest.raises(TemplateError) as info:
        render({"body": {"text": template}})
    assert info.value.path == "actions[0].params.body.text"
    assert reason in info.value.reason
    assert EVENT.data["hosts"] == ["a", "b"] and "a" not in EVENT.labels


def test_missing_fields_are_errors_not_empty_strings() -> None:
    with pytest.raises(TemplateError) as info:
        render({"targets": ["ok", "{{ labels.team }}"]})
    assert info.value.path == "actions[0].params.targets[1]"
    assert info.value.location == ("targets", 1)
    assert "team" in info.value.reason
    with pytest.raises(TemplateError, match="undefined"):
        render({"n": "{{ [labels.team] }}"})


def test_runtime_errors_name_the_param() -> None:
    with pytest.raises(TemplateError, match=r"params\.n: ZeroDivisionError"):
        render({"n": "{{ data.count / 0 }}"})


@pytest.mark.parametrize("template", ["{{ labels.a }", "{% if %}", "{{ a b }}", "{% endfor %}"])
def test_syntax_errors_at_compile_time(template: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_params({"deep": [{"x": template}]}, "actions[2].params")
    assert info.value.path == "actions[2].params.deep[0].x"
    assert info.value.location == ("deep", 0, "x")
    assert "syntax" in info.value.reason


def test_key_template_always_renders_text() -> None:
    template = Template("{{ data.count }}/{{ labels.instance }}", "throttle.key")
    assert template.render(CONTEXT) == "3/oca-ams-017:9100"
    assert Template("{{ data.count }}").render(CONTEXT) == "3"
    with pytest.raises(TemplateError, match=r"throttle\.key"):
        Template("{{ nope.x }}", "throttle.key").render(CONTEXT)


def test_plain_strings_are_not_templates() -> None:
    plain = {"a": "50% of {disk}", "b": "} {", "c": "${HOME}"}
    assert render(plain) == plain
