"""Chat formats: exact prompts, the tolerant tool-call parser, format detection."""

from __future__ import annotations

import datetime
import gc
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.chat_formats import (
    DEFAULT_SYSTEM_PROMPT,
    ChatFormat,
    format_for_metadata,
    get_format,
    parse_tool_calls,
)
from agentkit.errors import ConfigurationError, UserError
from agentkit.model_api import FunctionDefinition, Message, ToolCall

TODAY = datetime.date(2024, 7, 26)
TOOLS = [
    FunctionDefinition(
        name="get_weather",
        description="Current weather in a city.",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    ),
    FunctionDefinition(
        name="get_time",
        description="Local time in a time zone.",
        parameters={"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    ),
]
CONVERSATION = [
    Message.system("Answer briefly."),
    Message.user("Weather in Paris, and the time in CET?"),
    Message.assistant(
        tool_calls=[
            ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"}),
            # Arguments as a JSON string, as OpenAI clients send them: encoded once when rendered.
            ToolCall.from_wire(
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                }
            ),
        ]
    ),
    Message.tool("22C sunny", tool_call_id="c1", name="get_weather"),
    Message.tool('{"time": "14:05"}', tool_call_id="c2", name="get_time"),
]

LLAMA3_PROMPT = """\
<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You can call the functions below. To call one, answer with nothing but JSON of the form \
{"name": <function name>, "parameters": <dict of arguments>}. Use literal values, not variables. \
Once a function's result is in the conversation, answer the user from it.

{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {
                    "type": "string"
                }
            },
            "required": [
                "city"
            ]
        }
    }
}

{
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {
                "tz": {
                    "type": "string"
                }
            },
            "required": [
                "tz"
            ]
        }
    }
}

Answer briefly.<|eot_id|><|start_header_id|>user<|end_header_id|>

Weather in Paris, and the time in CET?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "get_weather", "parameters": {"city": "Paris"}}; \
{"name": "get_time", "parameters": {"tz": "CET"}}<|eot_id|>\
<|start_header_id|>ipython<|end_header_id|>

22C sunny<|eot_id|><|start_header_id|>ipython<|end_header_id|>

{"time": "14:05"}<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"""

CHATML_PROMPT = """\
<|im_start|>system
Answer briefly.

You have these tools:
{"name": "get_weather", "description": "Current weather in a city.", "parameters": {"type": \
"object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
{"name": "get_time", "description": "Local time in a time zone.", "parameters": {"type": \
"object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}

To use a tool, reply with only this:
<tool_call>
{"name": "tool name", "arguments": {"argument name": "value"}}
</tool_call>
Use a tool when the user asks for something a tool does. After a <tool_response>, answer the \
user in plain words from it and do not call the tool again.<|im_end|>
<|im_start|>user
Weather in Paris, and the time in CET?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>
<tool_call>
{"name": "get_time", "arguments": {"tz": "CET"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
22C sunny
</tool_response>
<tool_response>
{"time": "14:05"}
</tool_response><|im_end|>
<|im_start|>assistant
"""


# -- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"), [("llama3", LLAMA3_PROMPT), ("chatml", CHATML_PROMPT)]
)
def test_a_tool_calling_conversation_renders_exactly(name: str, expected: str) -> None:
    assert get_format(name).render(CONVERSATION, TOOLS, today=TODAY) == expected


def test_llama3_without_tools_keeps_the_date_lines_and_drops_the_environment() -> None:
    prompt = get_format("llama3").render([Message.user("Hi")], today=datetime.date(2025, 1, 5))
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 05 Jan 2025\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


SMOLLM = {"general.architecture": "llama", "general.name": "SmolLM2 135M Instruct"}


def test_chatml_injects_the_default_system_prompt_only_without_a_system_message() -> None:
    chatml = format_for_metadata(SMOLLM)  # SmolLM's own prompt, for SmolLM models only
    assert chatml.render([Message.user("Hello")]) == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    )
    own = chatml.render([Message.system("You are terse."), Message.user("Hello")])
    assert DEFAULT_SYSTEM_PROMPT not in own
    assert own.startswith("<|im_start|>system\nYou are terse.<|im_end|>\n")


@pytest.mark.parametrize(
    "metadata",
    [
        {"general.architecture": "qwen2", "general.name": "Qwen2.5 0.5B Instruct"},
        {"tokenizer.chat_template": "{{ '<|im_start|>' + role }}"},
        {},
    ],
)
def test_other_chatml_models_get_no_system_prompt_they_were_not_given(
    metadata: dict[str, str],
) -> None:
    chatml = format_for_metadata(metadata)
    assert chatml.name == "chatml"
    assert chatml.render([Message.user("Hello")]) == (
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    )
    with_tools = chatml.render([Message.user("Hello")], TOOLS)
    assert with_tools.startswith("<|im_start|>system\nYou have these tools:\n")
    assert "SmolLM" not in with_tools
    assert "SmolLM" not in get_format("chatml").render([Message.user("Hello")], TOOLS)


@pytest.mark.parametrize("name", ["llama3", "chatml"])
def test_tool_choice_none_hides_the_tools_and_forcing_a_call_keeps_the_prompt(name: str) -> None:
    fmt = get_format(name)
    question = [Message.user("Weather in Oslo?")]
    assert "get_weather" not in fmt.render(question, TOOLS, tool_choice="none")
    # The grammar holds `required` and a name; the prompt stays the same, so a run that forces
    # its first call and then goes back to `auto` reuses the cached prefix.
    auto = fmt.render(question, TOOLS)
    assert fmt.render(question, TOOLS, tool_choice="required") == auto
    assert fmt.render(question, TOOLS, tool_choice="get_time") == auto


@pytest.mark.parametrize("name", ["llama3", "chatml"])
def test_tool_results_are_rendered_as_written(name: str) -> None:
    prompt = get_format(name).render(
        [
            Message.user("Say it"),
            Message.assistant(tool_calls=[ToolCall(id="a", name="say", arguments={})]),
            Message.tool('it said "hi"', tool_call_id="a", name="say"),
        ]
    )
    assert 'it said "hi"' in prompt
    assert '"it said \\"hi\\""' not in prompt


@pytest.mark.parametrize("name", ["llama3", "chatml"])
def test_an_assistant_turn_keeps_its_text_before_its_calls(name: str) -> None:
    fmt = get_format(name)
    turn = Message.assistant(
        "Let me look.", [ToolCall(name="get_weather", arguments={"city": "Oslo"})]
    )
    prompt = fmt.render([Message.user("Oslo?"), turn])
    assert f"Let me look.\n{fmt.call_text(turn.tool_calls)}" in prompt
    answer, calls = fmt.parse(f"Let me look.\n{fmt.call_text(turn.tool_calls)}")
    assert answer == "Let me look."
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo"})]


# -- parsing --------------------------------------------------------------------------------

PARIS = ("get_weather", {"city": "Paris"})
CET = ("get_time", {"tz": "CET"})


@pytest.mark.parametrize(
    ("text", "answer", "calls"),
    [
        ('{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [PARIS]),
        ('{"name": "get_weather", "arguments": {"city": "Paris"}}', "", [PARIS]),
        (
            '{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}',
            "",
            [PARIS],
        ),
        ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [PARIS]),
        (
            '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
            '{"name": "get_time", "parameters": {"tz": "CET"}}',
            "",
            [PARIS, CET],
        ),
        (
            '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            '{"name": "get_time", "arguments": {"tz": "CET"}}',
            "",
            [PARIS, CET],
        ),
        (
            '[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "get_time", "arguments": {"tz": "CET"}}]',
            "",
            [PARIS, CET],
        ),
        ('<function=get_weather>{"city": "Paris"}</function>', "", [PARIS]),
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
            "",
            [PARIS],
        ),
        (
            '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "get_time", "arguments": {"tz": "CET"}}]</tool_call>',
            "",
            [PARIS, CET],
        ),
        (
            '```json\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```',
            "",
            [PARIS],
        ),
        (
            'I will check the weather.\n{"name": "get_weather", "parameters": {"city": "Paris"}}',
            "I will check the weather.",
            [PARIS],
        ),
        ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}', "", [PARIS]),
        (
            '{"type": "function", "function": {"name": "get_weather", '
            '"arguments": "{\\"city\\": \\"Paris\\"}"}}',
            "",
            [PARIS],
        ),
        ('[get_weather(city="Paris"), get_time(tz="CET")]', "", [PARIS, CET]),
        (
            '<|python_tag|>brave_search.call(query="Paris")',
            "",
            [("brave_search", {"query": "Paris"})],
        ),
        (
            'Sure!<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}',
            "Sure!",
            [PARIS],
        ),
    ],
)
def test_every_known_call_form_parses(text: str, answer: str, calls: list[tuple[str, Any]]) -> None:
    got_answer, got = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in got] == calls
    assert got_answer == answer
    assert len({c.id for c in got}) == len(got)


@pytest.mark.parametrize(
    "text",
    [
        "Paris is sunny today.",
        'The answer is {"name": "Ada", "age": 36}.',
        '{"name": "get_weather", "parameters": {"city": "Par',
        "<tool_call>not json</tool_call>",
        "[1, 2, 3]",
        "[see(figure)]",
        "Use `{}` for an empty object and [] for a list.",
        '{"name": 3, "arguments": {}}',
        "",
    ],
)
def test_text_without_a_well_formed_call_is_the_answer(text: str) -> None:
    assert parse_tool_calls(text) == (text, [])


def test_unparseable_arguments_are_kept_raw_for_the_tool_to_refuse() -> None:
    _, [call] = parse_tool_calls('{"name": "get_weather", "arguments": "city=Paris"}')
    assert call.arguments == {}
    assert call.raw_arguments == "city=Paris"


_fragments = st.lists(
    st.sampled_from(
        [
            *("<tool_call>", "</tool_call>", "<function=f>", "</function>", "<|python_tag|>"),
            *('{"name": "f", ', '"arguments": ', '"parameters": ', "{}", "{", "}", "[", "]"),
            *('"', ";", ",", "\n", " ", "```", "x(a=1)", "f.call(q=2)", "Sure.", "\\"),
        ]
    )
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_fragments)
def test_random_text_never_raises(text: str) -> None:
    answer, calls = parse_tool_calls(text)
    assert isinstance(answer, str)
    assert all(c.name for c in calls)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_unicode_text_never_raises(text: str) -> None:
    answer, calls = parse_tool_calls(text)
    if not set("{[<(") & set(text):  # nothing that could start a call: the text is the answer
        assert (answer, calls) == (text, [])


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# Strings holding the very markers the parser looks for.
_tricky = st.lists(
    st.sampled_from(
        [
            *("<tool_call>", "</tool_call>", "<function=f>", "</function>", "<|python_tag|>"),
            *('{"name": "g", "arguments": {}}', "```", '"', "\\", "\n", ";", "é", "x"),
        ]
    ),
    max_size=4,
).map("".join)
_calls = st.lists(
    st.builds(
        ToolCall,
        name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
        arguments=st.dictionaries(st.text(max_size=8), _json_values | _tricky, max_size=4),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(
    calls=_calls,
    name=st.sampled_from(["llama3", "chatml"]),
    prose=st.sampled_from(["", "Let me check.\n", "Sure, calling it now: "]),
)
def test_a_rendered_call_parses_back(calls: list[ToolCall], name: str, prose: str) -> None:
    fmt = get_format(name)
    answer, parsed = fmt.parse(prose + fmt.call_text(calls))
    assert [(c.name, c.arguments) for c in parsed] == [(c.name, c.arguments) for c in calls]
    assert answer == prose.strip(" \n;,")


_CALL = '{"name": "f", "arguments": {"a": 1}}'


@pytest.mark.parametrize(
    "unit",
    [
        pytest.param("<function=", id="unclosed-function-tags"),
        pytest.param("<function=f>{}</function>", id="function-calls"),
        pytest.param("<tool_call>", id="tool-call-tags"),
        pytest.param(f"<tool_call>{_CALL}</tool_call>", id="tool-calls"),
        pytest.param("<tool_call>{", id="tool-call-unclosed-json"),
        pytest.param('<function=f>{"a": [', id="function-unclosed-json"),
        pytest.param("{", id="braces"),
        pytest.param('{"', id="brace-quotes"),
        pytest.param('{"a": ', id="unclosed-objects"),
        pytest.param("[{}, ", id="unclosed-lists"),
        pytest.param(f"{_CALL}\n", id="bare-calls"),
        pytest.param(f"<|python_tag|>{_CALL}", id="python-tag-calls"),
        pytest.param("<|python_tag|>f(a=1); ", id="python-tag-python"),
        pytest.param('"<tool_call>[", ', id="tags-in-strings"),
    ],
)
def test_parsing_time_grows_linearly_with_the_text(unit: str) -> None:
    # Four times the text may take about four times the time, never sixteen (quadratic); the
    # bound leaves room for the doubling windows, which make the cost a staircase. CPU time
    # leaves out waiting for a busy CPU, the best of several runs the rest of the noise, and the
    # ratio needs no absolute time. The text grows until one parse takes long enough to time
    # (20 ms of CPU, well above the clock's resolution), and past 8 KiB (the parser reads values
    # in windows of 1 KiB).
    def cpu(text: str) -> float:
        started = time.process_time()
        parse_tool_calls(text)
        return time.process_time() - started

    gc.collect()
    gc.disable()  # a collection landing in one run only would skew the ratio
    try:
        size = 8_192 // len(unit) + 1
        while cpu(unit * size) < 0.02:
            size *= 2
        small, large = math.inf, math.inf
        for _ in range(3):  # interleaved: both sizes see the same load
            small = min(small, cpu(unit * size))
            large = min(large, cpu(unit * size * 4))
            # The rounds after the first are there for noise that makes a linear parser look
            # slower; once the ratio is within the bound, more rounds would only confirm it.
            if large / small < 10:
                break
    finally:
        gc.enable()
    assert large / small < 10


# -- choosing a format ----------------------------------------------------------------------


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"'mistral'.*chatml, llama3"):
        get_format("mistral")
    assert get_format("ChatML").name == "chatml"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"tokenizer.chat_template": "{{ '<|start_header_id|>' + role }}"}, "llama3"),
        ({"tokenizer.chat_template": "{{ '<|im_start|>' + role }}"}, "chatml"),
        ({"general.architecture": "llama", "general.name": "Meta Llama 3.1 8B Instruct"}, "llama3"),
        ({"general.architecture": "qwen2", "general.name": "Qwen2.5 0.5B"}, "chatml"),
        ({"general.architecture": "llama", "general.name": "TinyLlama"}, "chatml"),
        ({}, "chatml"),
    ],
)
def test_format_comes_from_gguf_metadata(metadata: dict[str, str], expected: str) -> None:
    assert format_for_metadata(metadata).name == expected


def test_the_embedded_model_speaks_chatml(model_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp", reason="needs the local extra")
    model = llama_cpp.Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    fmt = format_for_metadata(model.metadata)
    assert fmt.name == "chatml"
    assert "You are a helpful AI assistant named SmolLM" in fmt.render([Message.user("Hi")])
    assert fmt.stop == ("<|im_end|>",)
    # The stop string is one special token of this vocabulary.
    assert len(model.tokenize(fmt.stop[0].encode(), add_bos=False, special=True)) == 1


# -- call grammar arguments -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama3", "chatml"])
def test_call_grammar_refuses_what_allows_no_call(name: str) -> None:
    fmt: ChatFormat = get_format(name)
    with pytest.raises(UserError, match="no tools"):
        fmt.call_grammar([])
    with pytest.raises(UserError, match="'none' allows no call"):
        fmt.call_grammar(TOOLS, "none")
    with pytest.raises(
        UserError, match=r"'get_news' is not one of the tools \(get_weather, get_time\)"
    ):
        fmt.call_grammar(TOOLS, "get_news")
