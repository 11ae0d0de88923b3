#!/usr/bin/env python3
"""Oracle for chat templates (AutoTrain's chat_template "tokenizer"): conversations rendered by transformers'
own apply_chat_template (its Jinja environment: ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and
loopcontrols; tojson = json.dumps(ensure_ascii=False); raise_exception, strftime_now, dict, namespace globals;
`tools` and `documents` always passed as None; the special tokens map passed as variables).
Writes reference/chat_templates/:
  renders.json   {"cases": [...]}, each {"name", "template_file" (under tests/data/chat_templates/, null for the
                 synthetic ones), "template", "bos_token", "eos_token" (null: not passed to the template at all),
                 "add_generation_prompt", "messages", "extra" (more template variables), and "rendered", or "error"
                 (the message of a deliberate raise_exception)}
  pipeline/      what AutoTrain's default trainer does with a "messages" column: chat.jsonl, chat.csv and
                 chat.parquet (the same 12 conversations, the CSV holding str() of each list, the Parquet file written
                 by datasets' Dataset.to_parquet: a list of {role, content} structs a row), tokenizer_qwen2/ and
                 tokenizer_llama/ (the fixture tokenizers with qwen2.jinja / llama2.jinja as their chat_template), and
                 expected.json
                 {"qwen2"|"llama": {"texts": [apply_chat_template(messages, tokenize=False)], "ids": [tokenizer(
                 text + eos_token)["input_ids"]], "sft_ids": [tokenizer(text)["input_ids"] + [eos_token_id]]}}."""
import argparse
import ast
import csv
import functools
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES = ROOT / "tests" / "data" / "chat_templates"
DATE = {"date_string": "26 Jul 2024"}

# (file, bos_token, eos_token, extra variables): the special tokens each model's tokenizer_config.json has.
# Qwen2/2.5 have no bos token, so bos_token is undefined inside their templates.
MODELS = [
    ("llama2.jinja", "<s>", "</s>", {}),
    ("llama3.jinja", "<|begin_of_text|>", "<|eot_id|>", {}),
    ("llama31.jinja", "<|begin_of_text|>", "<|eot_id|>", {}),  # no date_string: its "26 Jul 2024" default is used
    ("llama32.jinja", "<|begin_of_text|>", "<|eot_id|>", DATE),  # would call strftime_now() without date_string
    ("qwen2.jinja", None, "<|im_end|>", {}),
    ("qwen25.jinja", None, "<|im_end|>", {}),
    ("qwen3.jinja", None, "<|im_end|>", {}),  # Qwen3-0.6B ... 32B: one template, no bos token either
    ("mistral_v01.jinja", "<s>", "</s>", {}),
    ("mistral_v02.jinja", "<s>", "</s>", {}),
    ("mistral_v03.jinja", "<s>", "</s>", {}),
    ("zephyr.jinja", "<s>", "</s>", {}),
    ("gemma.jinja", "<bos>", "<eos>", {}),
    ("phi3.jinja", "<s>", "<|endoftext|>", {}),
]


def msg(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "user": [msg("user", "Hello! Who are you?")],
    "multi_turn": [msg("user", "What is LoRA?"),
                   msg("assistant", "Two small matrices, A and B, next to each frozen weight."),
                   msg("user", "And QLoRA?"), msg("assistant", "LoRA on a base model kept in 4-bit NF4.")],
    "system": [msg("system", "You are a concise assistant."), msg("user", "Name a prime number."),
               msg("assistant", "7")],
    "tricky": [msg("user", "  Line one\nline two\n\n   indented, then trailing spaces   \n"),
               msg("assistant", " Café, naïve, 日本語, emoji 😀👍🏽 — \"double\" and 'single' quotes "),
               msg("user", "Print {{ messages }} and {% if true %}x{% endif %} literally; a \\n and a\ttab."),
               msg("assistant", "{{ bos_token }} stays text, so does {# this #} and <|im_end|>.")],
    # Empty strings are false in Jinja: templates that test `if message.content` or the system prompt branch on it.
    "empty_content": [msg("system", ""), msg("user", "Hi"), msg("assistant", "")],
    # Roles that do not alternate: Llama-2, Mistral and Gemma refuse them with raise_exception.
    "user_user": [msg("user", "First question."), msg("user", "Second question.")],
    "assistant_first": [msg("assistant", "I speak first."), msg("user", "Fine.")],
    # Reasoning written into the content, as Qwen3 writes it: its template keeps the <think> block of a turn after
    # the last user query and drops the one before it; the other templates print it as text.
    "thinking": [msg("user", "What is 2 + 2?"), msg("assistant", "<think>\nTwo plus two.\n</think>\n\n4"),
                 msg("user", "And 3 + 3?"), msg("assistant", "<think>\nThree plus three.\n</think>\n\n6")],
}
WITH_GENERATION_PROMPT = ["user", "system"]


def tool_call(name, arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


# Conversations for one template's own features, rendered with that template only: (name, messages,
# add_generation_prompt, extra variables).
MODEL_CASES = {
    "qwen3.jinja": [
        # reasoning_content is used as given (the content is then not split: its <think> stays text); it is dropped
        # before the last user query and stripped of newlines after it
        ("reasoning_content", [msg("user", "Capital of France?"),
                               {**msg("assistant", "Paris."), "reasoning_content": "Dropped: before the last query."},
                               msg("user", "And of Italy?"),
                               {**msg("assistant", "<think>\nkept as text\n</think>\n\nRome."),
                                "reasoning_content": "\n\nThe capital of Italy.\n"}], False, {}),
        # several assistant turns after the last user query: one with reasoning keeps it, one without is plain
        # (unless it is the last), and the <think> split tolerates newlines around the tags
        ("after_last_query", [msg("user", "Plan a trip."),
                              msg("assistant", "<think>\nStep one.\n</think>\n\nBook the train."),
                              msg("assistant", "Pack light."),
                              msg("assistant", "\n\n<think>\nLast step.\n\n</think>\nEnjoy.")], False, {}),
        # a user turn that is a tool response is not the last query, so the turn before it keeps its reasoning
        ("tool_response_as_user", [msg("user", "What is six times seven?"),
                                   msg("assistant", "<think>\nAsk the calculator.\n</think>\n\nCalling it."),
                                   msg("user", "<tool_response>\n42\n</tool_response>"),
                                   msg("assistant", "<think>\nIt said 42.\n</think>\n\n42.")], False, {}),
        # tool calls (wrapped in "function" or not; arguments as a dict, through tojson, or as a JSON string) and
        # consecutive tool results folded into one user turn
        ("tool_calls", [msg("system", "You may call tools."), msg("user", "Weather and time in Paris?"),
                        {**msg("assistant", ""), "tool_calls": [
                            tool_call("get_weather", {"city": "Paris", "unit": "°C", "days": [1, 2]}),
                            tool_call("get_time", "{\"tz\": \"CET\"}"),
                            {"name": "get_date", "arguments": {}}]},
                        msg("tool", "{\"temperature\": 21}"), msg("tool", "14:05"),
                        {**msg("assistant", "Checking the date too."),
                         "tool_calls": [tool_call("get_date", {"format": "ISO"})]},
                        msg("tool", "2025-05-01"),
                        msg("assistant", "<think>\nWarm, early afternoon.\n</think>\n\n21 °C at 14:05.")], True, {}),
        # enable_thinking=False prefills an empty think block; True (or unset) leaves the prompt open
        ("enable_thinking_false", CONVERSATIONS["user"], True, {"enable_thinking": False}),
        ("enable_thinking_true", CONVERSATIONS["user"], True, {"enable_thinking": True}),
        ("enable_thinking_false_no_prompt", CONVERSATIONS["thinking"], False, {"enable_thinking": False}),
    ],
}

# Templates written for the interpreter's tests: the Jinja features the real templates lean on.
SYNTHETIC = {
    "namespace_in_loop": "{%- set ns = namespace(n=0, roles='') -%}{%- for m in messages -%}{%- set ns.n = ns.n + 1 -%}"
                         "{%- set ns.roles = ns.roles ~ m.role[0] -%}{%- endfor -%}{{ ns.n }} {{ ns.roles }}",
    "loop_variables": "{% for m in messages %}{{ loop.index0 }}/{{ loop.index }}/{{ loop.length }}"
                      "{{ ' first' if loop.first }}{{ ' last' if loop.last }} {{ m['role'] }}\n{% endfor %}",
    "slicing": "{% for m in messages[1:] %}{{ m.role }},{% endfor %}|{% for m in messages[::-1] %}{{ m.role }},"
               "{% endfor %}|{{ messages[-1].content }}|{{ messages[:1] | length }}|{{ 'abcdef'[1:4] }}"
               "{{ 'abcdef'[::-2] }}|{{ messages[0].content[:5] }}",
    "filters": "{{ '  padded  ' | trim }}|{{ messages | length }}|{{ 'MiXeD' | upper }}{{ 'MiXeD' | lower }}|"
               "{{ ['a', 'b', 'c'] | join(', ') }}|{{ missing | default('fallback') }}|"
               "{{ messages | selectattr('role', 'equalto', 'system') | list | length }}|"
               "{{ (messages | selectattr('role', 'equalto', 'user') | list)[-1].content }}|"
               "{{ messages | map(attribute='role') | join('+') }}|{{ messages | first | tojson }}",
    "tojson": "{{ {'text': 'é 日本 \"q\" <b>&', 'n': [1, 2.5, none, true]} | tojson }}\n"
              "{{ {'b': 1, 'a': {'c': []}} | tojson(indent=2) }}\n{{ 'x' | tojson }}{{ 3 | tojson }}",
    "tests": "{{ messages is defined }} {{ nothing is defined }} {{ nothing is not defined }} {{ none is none }}"
             " {{ messages[0].content is string }} {{ 3 is string }} {{ messages[0] is mapping }}"
             " {{ 'system' in messages[0].role }} {{ 'x' not in 'abc' }} {{ 'role' in messages[0] }}"
             " {{ 'tool_calls' in messages[0] }} {{ 2 in [1, 2] }}",
    "expressions": "{{ 'yes' if messages | length > 2 else 'no' }} {{ 'n=' ~ 3 ~ '/' ~ true }} {{ 7 % 3 }}"
                   " {{ not true or false and true }} {{ (1 + 2) * 3 }} {{ 'ab' * 3 }} {{ 1 < 2 <= 2 }}",
    "arithmetic": "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 / 2 }} {{ 10 / 5 }} {{ 2 ** 3 }} {{ 2 ** 0.5 }} {{ 1 + 2.5 }}"
                  " {{ 0.1 + 0.2 }} {{ 3 - 5 }} {{ 1e3 }} {{ 7.0 }} {{ -0.0 }}",
    "printing": "{{ [1, 'a', \"it's\", none, true, false, 2.0] }} {{ {'k': 'v', 'n': 1} }} {{ none }} {{ true }}"
                " {{ false }} {{ messages[0] }} {{ nothing }}| {{ ('t', 1) }}",
    "string_methods": "{{ '  x y  '.strip() }}|{{ '--x--'.strip('-') }}|{{ '  x'.lstrip() }}|{{ 'x  '.rstrip() }}|"
                      "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }}|{{ 'a,b,,c'.split(',') }}|"
                      "{{ ' a  b '.split() }}|{{ 'a<sep>b'.split('<sep>')[-1] }}|{{ 'hello world'.title() }}|"
                      "{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ 'aaa'.replace('a', 'b') }}",
    "whitespace_control": "A\n  {%- if true %}\n    B {# comment #}\n  {% endif -%}\n  C {{- ' D ' -}} E\n"
                          "{% for x in [1, 2] %}\n    item {{ x }}\n{% endfor %}\n  {# only a comment #}\nend\n",
    "plus_modifiers": "x\n  {%+ if true %}\nA\n  {% endif +%}\nB\n  {#+ kept +#}\nC",
    "break_continue": "{% for n in range(10) %}{% if n == 1 %}{% continue %}{% endif %}{% if n == 5 %}{% break %}"
                      "{% endif %}{{ n }}{% endfor %}|{% for m in messages if m.role != 'system' %}{{ m.role[0] }}"
                      "{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}",
    "dicts": "{% set d = {'b': 2, 'a': 1, 'c': [3]} %}{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|"
             "{{ d['a'] }} {{ d.b }} {{ d.get('z', 'none here') }} {{ d | length }}|{{ dict(x=1, y='z') }}",
    "if_elif_else": "{% for m in messages %}{% if m.role == 'system' %}S{% elif m.role == 'user' %}U{% else %}A"
                    "{% endif %}{% endfor %}",
    "block_set_and_macro": "{% set header %}[{{ messages | length }} messages]{% endset %}{{ header }}\n"
                           "{% macro turn(m, sep=': ') %}{{ m.role | upper }}{{ sep }}{{ m.content }}{% endmacro %}"
                           "{% for m in messages %}{{ turn(m) }}\n{% endfor %}{{ turn(messages[0], sep=' = ') }}",
    "set_scope": "{% set x = 1 %}{% for m in messages %}{% set x = x + 1 %}{{ x }}{% endfor %}:{{ x }}",
    "globals": "{{ bos_token }}{{ eos_token }} {{ strftime_now is defined }} {{ tools is none }}"
               " {{ documents is none }} {{ add_generation_prompt }} {{ raise_exception is defined }}",
    "string_literals": "{{ 'a\\nb\\tc' }}|{{ \"it's\" }}|{{ 'say \"hi\"' }}|{{ '\\u00e9\\\\' }}|{{ '{{ not code }}' }}",
    "more_builtins": "{{ (1, none) | tojson(indent=2) }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ 'x' | default('y', true) }}"
                     "{{ '' | default('y', true) }} {{ [3, 1] | reverse | list }} {{ 'abc' | reverse }}"
                     " {{ 'a b' | replace(' ', '_') }} {{ 1 if none else 2 }} {{ messages[0]['missing'] is defined }}"
                     " {{ 'Hello' | first }}{{ [1, 2] | last }} {{ 3 | string ~ 4 }} {{ '5' | int + 1 }}{{ 2.7 | int }}"
                     " {{ range(2, 10, 3) | list }} {{ 'a\"b' | tojson }} {{ 'ab' in ['ab'] }} {{ [1] + [2] }}"
                     " {{ {'a': 1}.keys() | list }}{{ {'a': 1}.values() | list }} {{ 'x'.split('y') }}"
                     " {{ messages | rejectattr('role', 'equalto', 'system') | map(attribute='role') | join(',') }}"
                     " {{ 4 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }} {{ 'abc'.find('c') }}",
    "recursive_macro": "{% macro count(n) %}{{ n }}{% if n > 0 %},{{ count(n - 1) }}{% endif %}{% endmacro %}"
                       "{{ count(5) }}{% macro show(v) %}{% if v is mapping %}{% for k, x in v.items() %}{{ k }}:"
                       "{{ show(x) }};{% endfor %}{% elif v is string %}'{{ v }}'{% else %}{{ v }}{% endif %}"
                       "{% endmacro %} {{ show({'a': {'b': 'c', 'd': [1]}}) }}",
    "raise_exception": "{% if messages[0].role != 'user' %}{{ raise_exception('First message must be from the user, "
                       "got ' ~ messages[0].role) }}{% endif %}ok",
}


@functools.lru_cache(maxsize=None)
def tokenizer_for(fixtures, bos, eos):
    """A tokenizer whose special tokens map is exactly {bos_token, eos_token}: apply_chat_template passes that map
    to the template, so the other special tokens of the fixture (pad, unk) are left out on purpose."""
    from transformers import PreTrainedTokenizerFast
    tokens = {"eos_token": eos} if bos is None else {"bos_token": bos, "eos_token": eos}
    return PreTrainedTokenizerFast(tokenizer_file=str(fixtures / "models" / "qwen2" / "tokenizer.json"), **tokens)


def render_case(fixtures, name, template_file, template, bos, eos, messages, generation_prompt, extra):
    import jinja2
    case = {"name": name, "template_file": template_file, "template": template, "bos_token": bos,
            "eos_token": eos, "add_generation_prompt": generation_prompt, "messages": messages, "extra": extra}
    try:
        case["rendered"] = tokenizer_for(fixtures, bos, eos).apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt, **extra)
    except jinja2.exceptions.TemplateError as e:
        if type(e) is not jinja2.exceptions.TemplateError:  # raise_exception raises exactly TemplateError
            print(f"skipped {name}: {type(e).__name__}: {e}")
            return None
        case["error"] = str(e)
    except Exception as e:  # noqa: BLE001 - anything else is a template not meant for this conversation
        print(f"skipped {name}: {type(e).__name__}: {e}")
        return None
    return case


def render_cases(fixtures):
    cases = []
    for file, bos, eos, extra in MODELS:
        template = (TEMPLATES / file).read_text(encoding="utf-8")
        for conversation, messages in CONVERSATIONS.items():
            for generation_prompt in [False, True] if conversation in WITH_GENERATION_PROMPT else [False]:
                name = f"{file.removesuffix('.jinja')}/{conversation}" + ("+generation_prompt" * generation_prompt)
                cases.append(render_case(fixtures, name, file, template, bos, eos, messages, generation_prompt,
                                         extra))
        for case, messages, generation_prompt, case_extra in MODEL_CASES.get(file, []):
            name = f"{file.removesuffix('.jinja')}/{case}" + ("+generation_prompt" * generation_prompt)
            cases.append(render_case(fixtures, name, file, template, bos, eos, messages, generation_prompt,
                                     {**extra, **case_extra}))
    for name, template in SYNTHETIC.items():
        for conversation in ["system", "assistant_first"] if name == "raise_exception" else ["system"]:
            cases.append(render_case(fixtures, f"synthetic_{name}/{conversation}", None, template, "<s>", "</s>",
                                     CONVERSATIONS[conversation], True, {}))
    return [case for case in cases if case is not None]


def lines(start, count):
    text = (ROOT / "tests" / "data" / "multilingual.txt").read_text(encoding="utf-8").splitlines()
    return text[start:start + count]


def pipeline_records():
    """12 conversations that Llama-2's template accepts too: an optional system message, then user/assistant
    turns alternating and starting with the user."""
    text = lines(0, 60)
    records = []
    for i in range(12):
        turns = 1 + i % 3  # 1 to 3 user/assistant exchanges
        messages = [msg("system", text[(7 * i + 40) % 60])] if i % 4 == 1 else []
        for t in range(turns):
            messages += [msg("user", text[(5 * i + 2 * t) % 60]), msg("assistant", text[(5 * i + 2 * t + 1) % 60])]
        records.append({"messages": messages})
    records[3]["messages"][0]["content"] = "Line one\nline two, with \"double\" and 'single' quotes, {braces}"
    records[5]["messages"][-1]["content"] = "  spaces around, and a tab\t "
    # str() writes these with escapes that ast.literal_eval must undo: \u200d (zero-width joiner), \\, \r\n
    records[7]["messages"][-1]["content"] = lines(60, 1)[0]
    records[9]["messages"][0]["content"] = lines(106, 1)[0] + "\r\nand a second line"
    return records


def write_pipeline(fixtures, out):
    from transformers import AutoTokenizer
    out.mkdir(parents=True, exist_ok=True)
    records = pipeline_records()
    with open(out / "chat.jsonl", "w", encoding="utf-8", newline="") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open(out / "chat.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)  # quotes fields as needed, "" for a quote, \r\n rows
        writer.writerow(["messages"])
        for record in records:
            writer.writerow([str(record["messages"])])
    with open(out / "chat.csv", encoding="utf-8", newline="") as f:
        fields = [row["messages"] for row in csv.DictReader(f)]
    # AutoTrain parses a string column with ast.literal_eval; it must give the JSONL messages back.
    assert [ast.literal_eval(field) for field in fields] == [r["messages"] for r in records]
    import datasets
    datasets.disable_progress_bars()
    datasets.Dataset.from_list(records).to_parquet(str(out / "chat.parquet"))
    import pyarrow.parquet as pq
    assert pq.read_table(out / "chat.parquet").to_pylist() == records  # no struct fields added, none null

    expected = {}
    for name, fixture, template in [("qwen2", "qwen2", "qwen2.jinja"), ("llama", "llama", "llama2.jinja")]:
        folder = out / f"tokenizer_{name}"
        folder.mkdir(exist_ok=True)
        for file in ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"]:
            if (fixtures / "models" / fixture / file).exists():
                shutil.copy(fixtures / "models" / fixture / file, folder / file)
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["chat_template"] = (TEMPLATES / template).read_text(encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        assert tokenizer.chat_template == config["chat_template"]
        # AutoTrain (trainers/clm, chat_template "tokenizer"): the rendered text, then + eos_token (add_eos_token),
        # then tokenizer(text) with its special tokens: llama's bos lands twice (once from the template).
        texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=False)
                 for r in records]
        ids = [tokenizer(text + tokenizer.eos_token)["input_ids"] for text in texts]
        # trainer "sft": TRL's packing (ConstantLengthDataset) tokenizes with special tokens and appends the eos id
        sft_ids = [tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in texts]
        expected[name] = {"template_file": template, "eos_token": tokenizer.eos_token, "texts": texts, "ids": ids,
                          "sft_ids": sft_ids}
    (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main():
    import transformers
    transformers.utils.logging.set_verbosity_error()
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    out = fixtures / "reference" / "chat_templates"
    out.mkdir(parents=True, exist_ok=True)
    cases = render_cases(fixtures)
    (out / "renders.json").write_text(json.dumps({"cases": cases}, indent=1, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    write_pipeline(fixtures, out / "pipeline")
    print(f"{len(cases)} cases ({sum('error' in c for c in cases)} errors) in {out / 'renders.json'}")


if __name__ == "__main__":
    main()
