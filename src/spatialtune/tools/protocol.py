"""The chain-of-focus dialect: tool turns exactly as the Qwen-VL chat templates and TRL's GRPO tool loop render them.

One exchange, as records, eval prompts and RL rollouts all hold it:
- system: the instructions, then Qwen's own `# Tools` block declaring the tools (`tool_system_prompt`);
- assistant: `<think>…</think>\\n<tool_call>\\n{"name": "crop", "arguments": {"bbox": [x1, y1, x2, y2]}}\\n</tool_call>`;
- tool (`role: "tool"`, `name: "crop"`): `[{"type": "image"}, {"type": "text", "text": "Here is the zoomed region."}]`,
  or for a refused call the text `{'error': '<reason>'}` (what TRL shows the model when a tool raises);
- assistant: `<think>…</think>\\n<answer>…</answer>`.

How the two templates render it (checked token for token by tests/tools/test_token_identity.py):
- Qwen3-VL renders consecutive tool messages as one user turn, each wrapped in `<tool_response>`:
  `<|im_start|>user\\n<tool_response>\\n<|vision_start|><|image_pad|><|vision_end|>Here is the zoomed region.\\n</tool_response><|im_end|>\\n`.
  Structured `tool_calls` render after the content as `\\n<tool_call>\\n{"name": …, "arguments": <tojson>}\\n</tool_call>`,
  the very text the call above writes in the content; `tools=` renders the `# Tools` block after the system text.
- Qwen2.5-VL renders the role as it is: `<|im_start|>tool\\n<|vision_start|><|image_pad|><|vision_end|>Here is…<|im_end|>\\n`.
  It drops structured `tool_calls` and ignores `tools=`: so the call is kept as text and the tools are declared in the
  system text, which renders the same in both families.
An image part in a tool message is a vision placeholder like any other: the processor takes the images of all
messages in order (`attach_images` fills them; TRL's `prepare_multimodal_messages` skips tool messages).

TRL 1.16 (`GRPOTrainer._tool_call_loop`) appends `{"role": "tool", "name": name, "content": result}` after the
assistant turn it parsed, where a tool returning a list of content blocks (an image, a text) keeps them as the content
and a tool that raises becomes `str({"error": str(e)})`; it renders the prompt with `tools=` and continues from
`prompt ids + completion ids + _get_tool_suffix_ids(tool messages)`, never re-tokenising what the model wrote.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from ..errors import SpatialtuneError
from ..records import text_parts

TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
TOOL_CALL_SPACING = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
TOOLS_BLOCK = "\n\n# Tools\n\n"  # what separates the instructions from the declaration in a system prompt
IMAGE_MARKER = "<image>"  # how the source's records put an image inside string content


class ToolCallError(SpatialtuneError):
    """A tool call that is refused (the reason is shown to the model and kept in the results)."""


class DialectError(SpatialtuneError):
    """A conversation that cannot be put into the tool dialect (e.g. images and image parts do not match)."""


def tool_system_prompt(instructions: str, tools: Sequence[dict[str, Any]]) -> str:
    """The instructions followed by Qwen's `# Tools` block, byte for byte what Qwen3-VL's template renders from `tools=`."""
    schemas = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)  # the template's `tool | tojson`
    return (
        f"{instructions}{TOOLS_BLOCK}You may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>{schemas}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
        'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def tool_call_text(name: str, arguments_json: str) -> str:
    """A call as the templates render a structured `tool_calls` entry (arguments given as JSON text)."""
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments_json}}}\n</tool_call>'


def has_tool_call(reply: str) -> bool:
    """Whether a reply opens a `<tool_call>` (well-formed or not)."""
    return TOOL_CALL.search(reply) is not None


def parse_tool_call(reply: str, tools: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object of the first `<tool_call>` of a reply (None: no call); a malformed one raises ToolCallError."""
    match = TOOL_CALL.search(reply)
    if match is None:
        return None
    if "</tool_call>" not in reply[match.start():]:
        raise ToolCallError("the tool call is not closed with </tool_call>")
    try:
        call = json.loads(match.group(1).strip())
    except json.JSONDecodeError as e:
        raise ToolCallError(f"the tool call is not valid JSON ({e.msg})") from None
    except (ValueError, RecursionError) as e:  # an integer past Python's digit limit, "[[[[…" nested too deep
        raise ToolCallError(f"the tool call is not usable JSON ({e})") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not isinstance(call.get("arguments", {}), dict):
        raise ToolCallError('a tool call must be {"name": "...", "arguments": {...}}')
    if call["name"] not in tools:
        raise ToolCallError(f"unknown tool {call['name']!r}; available: {', '.join(tools)}")
    return {"name": call["name"], "arguments": call.get("arguments", {})}


def refusal_text(reason: str) -> str:
    """A refused call as the model sees it: TRL's `str({"error": str(e)})` for a tool that raised."""
    return str({"error": reason})


def is_refusal(text: str) -> bool:
    """Whether a tool turn's text is a refused call as `refusal_text` (and TRL, for a tool that raised) writes it."""
    return text.startswith(refusal_text("")[:-3])


def tool_message(text: str, image: Any = None, name: str = "crop") -> dict[str, Any]:
    """A `role: "tool"` message: the image part first (a payload, or a placeholder when `image` is a path), then text."""
    if image is None:
        parts: list[dict[str, Any]] = []
    elif isinstance(image, str):
        parts = [{"type": "image"}]
    else:
        parts = [{"type": "image", "image": image}]
    return {"role": "tool", "name": name, "content": [*parts, {"type": "text", "text": text}]}


def assistant_message(text: str) -> dict[str, Any]:
    """An assistant turn holding `text` (calls included, as text)."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _parts(content: Any) -> list[dict[str, Any]]:
    """Message content as a list of parts (a string becomes text, its `<image>` markers image parts)."""
    if not isinstance(content, str):
        return list(content or [])
    if IMAGE_MARKER not in content:
        return [{"type": "text", "text": content}]
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(content.split(IMAGE_MARKER)):
        if i:
            parts.append({"type": "image"})
        if piece.strip():
            parts.append({"type": "text", "text": piece.strip()})
    return parts


def attach_images(messages: list[dict[str, Any]], images: Sequence[Any]) -> list[dict[str, Any]]:
    """The messages with every image placeholder filled in order, tool messages included, as the processor reads them."""
    filled, next_image = [], iter(images)
    for message in messages:
        parts = []
        for part in _parts(message.get("content")):
            if part.get("type") == "image" and "image" not in part:
                part = {**part, "image": next(next_image, None)}
                if part["image"] is None:
                    raise DialectError(f"more image parts than the {len(images)} image(s) given")
            parts.append(part)
        filled.append({**message, "content": parts})
    if next(next_image, None) is not None:
        raise DialectError(f"{len(images)} image(s) given for fewer image parts")
    return filled


def _text(content: Any) -> str:
    """The text of a message's content, its text parts joined."""
    return "".join(text_parts(content))


def canonical_tool_calls(text: str) -> str:
    """Calls written `<tool_call>{…}</tool_call>` (any spacing) in the templates' spacing `<tool_call>\\n{…}\\n</tool_call>`."""
    return TOOL_CALL_SPACING.sub(lambda m: f"<tool_call>\n{m.group(1)}\n</tool_call>", text)


def from_user_turn_crops(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversation in the source's format (the crop shown back as a user turn after a call) in the tool dialect.

    A user turn right after an assistant turn that calls a tool becomes a `role: "tool"` message with the same parts
    (`<image>` markers in string content become image parts); calls are respaced as the templates write them.
    Anything else is kept as it is, so a conversation already in the dialect comes back unchanged.
    """
    converted: list[dict[str, Any]] = []
    for message in messages:
        previous = converted[-1] if converted else None
        if message.get("role") == "assistant" and has_tool_call(_text(message.get("content"))):
            message = {**message, "content": [{"type": "text", "text": canonical_tool_calls(_text(message["content"]))}]}
        elif message.get("role") == "user" and previous and previous["role"] == "assistant" and has_tool_call(_text(previous["content"])):
            call = TOOL_CALL.search(_text(previous["content"]))
            name = re.search(r'"name"\s*:\s*"([^"]+)"', call.group(1)) if call else None
            message = {"role": "tool", "name": name.group(1) if name else "crop", "content": _parts(message.get("content"))}
        converted.append(message)
    return converted


def template_declares_tools(processor, tools: Sequence[Any]) -> bool:
    """Whether a processor's chat template renders `tools=` itself (Qwen3-VL does; Qwen2.5-VL ignores it)."""
    probe = [{"role": "system", "content": [{"type": "text", "text": "probe"}]}]
    return processor.apply_chat_template(probe, tools=list(tools), tokenize=False) != processor.apply_chat_template(probe, tokenize=False)


def prompt_for_tools_argument(messages: list[dict[str, Any]], processor, tools: Sequence[Any]) -> list[dict[str, Any]]:
    """The messages to render with `tools=` (as TRL does): the declaration cut from the system text where the template
    renders it itself, kept where the template ignores `tools=`; either way the tokens equal the declared messages'."""
    system = messages[0] if messages and messages[0].get("role") == "system" else None
    if system is None or not template_declares_tools(processor, tools):
        return messages
    text = _text(system.get("content"))
    if TOOLS_BLOCK not in text:
        return messages
    instructions = text[: text.index(TOOLS_BLOCK)]
    return [{**system, "content": [{"type": "text", "text": instructions}]}, *messages[1:]]
