"""The tool dialect: the declaration, calls and tool messages exactly as the Qwen-VL templates render them; images
attached in order (tool messages included); the source's user-turn crops converted."""

from __future__ import annotations

import pytest
from PIL import Image

from spatialtune.models.tiny import build_tiny
from spatialtune.tools.crop import CROP_INSTRUCTIONS, CROP_TOOL, TOOLS, crop_call_text, crop_system_prompt
from spatialtune.tools.protocol import (
    DialectError,
    ToolCallError,
    attach_images,
    from_user_turn_crops,
    parse_tool_call,
    prompt_for_tools_argument,
    refusal_text,
    template_declares_tools,
    tool_message,
)


@pytest.fixture(scope="module")
def processors():
    return {name: build_tiny(name)[1] for name in ("tiny-qwen2.5-vl", "tiny-qwen3-vl")}


def system(text: str) -> list[dict]:
    return [{"role": "system", "content": [{"type": "text", "text": text}]}]


def test_the_system_prompt_is_what_qwen3_vl_renders_from_tools(processors):
    processor = processors["tiny-qwen3-vl"]
    from_tools = processor.apply_chat_template(system(CROP_INSTRUCTIONS), tools=[CROP_TOOL], tokenize=False)
    assert from_tools == processor.apply_chat_template(system(crop_system_prompt()), tokenize=False)


def test_the_declaration_is_cut_for_tools_only_where_the_template_renders_them(processors):
    declared = system(crop_system_prompt())
    assert template_declares_tools(processors["tiny-qwen3-vl"], [CROP_TOOL])
    assert prompt_for_tools_argument(declared, processors["tiny-qwen3-vl"], [CROP_TOOL]) == system(CROP_INSTRUCTIONS)
    assert not template_declares_tools(processors["tiny-qwen2.5-vl"], [CROP_TOOL])  # Qwen2.5-VL ignores tools=
    assert prompt_for_tools_argument(declared, processors["tiny-qwen2.5-vl"], [CROP_TOOL]) == declared


def test_a_call_in_text_renders_as_qwen3_vl_renders_structured_tool_calls(processors):
    processor = processors["tiny-qwen3-vl"]
    structured = {"role": "assistant", "content": [{"type": "text", "text": "<think>zoom</think>"}],
                  "tool_calls": [{"type": "function", "function": {"name": "crop", "arguments": {"bbox": [1, 2, 30, 40]}}}]}
    text = {"role": "assistant", "content": [{"type": "text", "text": "<think>zoom</think>\n" + crop_call_text("[1, 2, 30, 40]")}]}
    assert processor.apply_chat_template([structured], tokenize=False) == processor.apply_chat_template([text], tokenize=False)


@pytest.mark.parametrize("name, header", [("tiny-qwen2.5-vl", "<|im_start|>tool\n"), ("tiny-qwen3-vl", "<|im_start|>user\n<tool_response>\n")])
def test_a_tool_message_with_the_crop_renders_in_each_template(processors, name, header):
    rendered = processors[name].apply_chat_template([tool_message("Here is the zoomed region.", image="crop.png")], tokenize=False)
    assert rendered.endswith(header + "<|vision_start|><|image_pad|><|vision_end|>Here is the zoomed region." +
                             ("\n</tool_response>" if "qwen3" in name else "") + "<|im_end|>\n")


def test_parse_tool_call_reads_json_only():
    assert parse_tool_call("no call here", TOOLS) is None
    assert parse_tool_call(crop_call_text("[1, 2, 3, 4]"), TOOLS) == {"name": "crop", "arguments": {"bbox": [1, 2, 3, 4]}}
    with pytest.raises(ToolCallError):
        parse_tool_call("<tool_call>{'name': 'crop'}</tool_call>", TOOLS)  # Python literal, not JSON


def test_a_refusal_reads_as_trl_shows_a_tool_that_raised():
    assert refusal_text("bad box") == "{'error': 'bad box'}"


def test_images_are_attached_in_order_tool_messages_included():
    first, crop = Image.new("RGB", (8, 8)), Image.new("RGB", (4, 4))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}, tool_message("z", image="c.png")]
    filled = attach_images(messages, [first, crop])
    assert filled[0]["content"][0]["image"] is first and filled[1]["content"][0]["image"] is crop
    with pytest.raises(DialectError):
        attach_images(messages, [first])
    with pytest.raises(DialectError):
        attach_images(messages, [first, crop, crop])


def test_the_sources_user_turn_crop_becomes_a_tool_message():
    source = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "<image> What action?"},
        {"role": "assistant", "content": '<think>zoom</think>\n<tool_call>{"name": "crop", "arguments": {"bbox": [1, 2, 3, 4]}}</tool_call>'},
        {"role": "user", "content": "<image> (zoomed)"},
        {"role": "assistant", "content": "<think>seen</think>\n<answer>riding bicycle</answer>"},
    ]
    converted = from_user_turn_crops(source)
    assert converted[:2] == source[:2] and converted[4] == source[4]
    assert converted[2]["content"] == [{"type": "text", "text": "<think>zoom</think>\n" + crop_call_text("[1, 2, 3, 4]")}]
    assert converted[3] == {"role": "tool", "name": "crop", "content": [{"type": "image"}, {"type": "text", "text": "(zoomed)"}]}


def test_the_old_cof_tool_sft_records_convert_and_the_new_ones_stay_as_they_are():
    call = '<think>zoom</think>\n<tool_call>{"name": "crop", "arguments": {"bbox": {box:2}}}</tool_call>'
    old = [{"role": "assistant", "content": [{"type": "text", "text": call}]},
           {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Here is the zoomed region."}]}]
    new = from_user_turn_crops(old)
    assert new[0]["content"][0]["text"] == "<think>zoom</think>\n" + crop_call_text("{box:2}")
    assert new[1] == tool_message("Here is the zoomed region.", image="crop.png")
    assert from_user_turn_crops(new) == new
