"""One chain-of-focus exchange has the same tokens everywhere: as the SFT record cof-tool-sft writes (through the
record → row path and the SFT collator), as the eval prompt the runner builds after a scripted model's call, and as
TRL 1.16's GRPO tool loop builds the conversation (its own `_tokenize_prompts` and `_get_tool_suffix_ids`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from trl import GRPOTrainer
from trl.chat_template_utils import (
    add_response_schema,
    get_training_chat_template,
    is_chat_template_prefix_preserving,
    parse_response,
    supports_tool_calling,
)
from trl.data_utils import prepare_multimodal_messages

from spatialtune.data.builders import run_builder
from spatialtune.data.builders.cof_tool_sft import CofToolSettings
from spatialtune.data.collate import SpatialCollator
from spatialtune.data.dataset import prepare_rows
from spatialtune.data.render import GeometryRenderer
from spatialtune.eval.scoring import row_frame
from spatialtune.eval.tool_use import generate_with_tools
from spatialtune.geometry import convention_for_model_type
from spatialtune.models.tiny import build_tiny
from spatialtune.tools.crop import TOOLS, CropSession, ToolSettings
from spatialtune.tools.protocol import parse_tool_call, prompt_for_tools_argument

# 224×112 is a multiple of Qwen2.5-VL's 28 px (no resizing), and the crop [28, 0, 140, 112] reads back exactly from
# both conventions (qwen3_1000: [125, 0, 625, 1000]), so the eval's crop is the record's crop to the pixel.
SIZE = (224, 112)
PERSON, CUP = [28, 0, 84, 112], [84, 28, 140, 84]


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory) -> Path:
    """cof-tool-sft's train.jsonl for one HOI referring record, the crop tool used."""
    root = tmp_path_factory.mktemp("cof")
    pixels = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "a.png")
    record = {
        "id": "r0", "task": "referring", "images": ["a.png"], "boxes": [PERSON, CUP],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Person {box:0}, object {box:1}: what action?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "holding cup"}]},
        ],
        "meta": {"hoi_pairs": [[0, 1]], "object_category": "cup"},
    }
    (root / "in.jsonl").write_text(json.dumps(record) + "\n")
    run_builder("cof-tool-sft", CofToolSettings(input=[str(root / "in.jsonl")], tool_ratio=1.0, crop_padding=0.0), root / "out")
    return root / "out" / "train.jsonl"


class ScriptedModel:
    """Stands in for the model in the runner's generate_batch: records every prompt, answers with the next reply."""

    def __init__(self, tokenizer, replies: list[str]):
        self.tokenizer, self.replies, self.prompts, self.device = tokenizer, list(replies), [], torch.device("cpu")

    def modules(self):
        return iter(())  # no submodules: no spatial-linking module for the runner to feed

    def generate(self, **inputs):
        self.prompts.append({k: v.clone() for k, v in inputs.items() if torch.is_tensor(v)})
        reply = self.tokenizer(self.replies.pop(0), add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return torch.cat([inputs["input_ids"], torch.tensor([reply])], dim=1)


def trl_trainer_stub(processor, tools: list) -> SimpleNamespace:
    """The GRPOTrainer attributes `_tokenize_prompts` and `_get_tool_suffix_ids` read, set as its __init__ sets them."""
    prefix_ok = is_chat_template_prefix_preserving(processor)
    return SimpleNamespace(
        processing_class=processor, _tokenizer=processor.tokenizer, _is_vlm=True, tools=tools, environment_factories=None,
        chat_template=None if prefix_ok else get_training_chat_template(processor), chat_template_kwargs={},
    )


def trl_tool_loop_ids(processor, row: dict, replies: list[str], session: CropSession) -> tuple[list[int], list[int], list]:
    """Token ids of the exchange as TRL's GRPOTrainer builds them: prompt ids + completion ids + tool suffix ids + the
    next completion (GRPOTrainer._generate → _tool_call_loop), the crop tool being the session's `crop` method."""
    tokenizer = processor.tokenizer
    with Image.open(row["images"][0]) as im:
        original = im.convert("RGB")
    # GRPOTrainer._prepare_inputs: the dataset prompt with its images filled in; tools rendered by the template.
    prompt = prepare_multimodal_messages(prompt_for_tools_argument(row["messages"][:2], processor, [session.crop]), images=[original])
    trainer = trl_trainer_stub(processor, [session.crop])
    prompt_ids = GRPOTrainer._tokenize_prompts(trainer, [prompt])[0][0]
    call_ids = tokenizer(replies[0], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if supports_tool_calling(processor):  # TRL parses the completion itself (Qwen3-VL); Qwen2.5-VL's template is refused
        add_response_schema(processor)
        call = parse_response(tokenizer, call_ids, prefix=prompt_ids, tools=[session.crop])["tool_calls"][0]["function"]
    else:
        call = parse_tool_call(replies[0], TOOLS)
    result = session.crop(**call["arguments"])  # the environment's tool, as _tool_call_loop calls it
    tool_messages = [{"role": "tool", "name": call["name"], "content": result}]
    suffix_ids = GRPOTrainer._get_tool_suffix_ids(trainer, tool_messages)
    answer_ids = tokenizer(replies[1], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    images = [original, result[0]["image"]]
    return prompt_ids, prompt_ids + call_ids + suffix_ids + answer_ids, images


@pytest.mark.parametrize("model_name", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_sft_record_eval_prompt_and_trl_tool_loop_give_identical_tokens(model_name, sft_file, tmp_path):
    model, processor = build_tiny(model_name)
    convention = convention_for_model_type(model.config.model_type)
    tokenizer = processor.tokenizer

    # (a) the SFT record, through the record → row path and the SFT collator (TRL's, with the training template)
    [row] = prepare_rows(sft_file, processor, convention).rows
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    sft = SpatialCollator(processor)([row])
    sft_ids = sft["input_ids"][0].tolist()
    replies = [row["messages"][2]["content"][0]["text"], row["messages"][4]["content"][0]["text"]]

    # (b) the eval runner: the same sample without the exchange, a scripted model emitting the call, then the answer
    eval_row = {**row, "messages": row["messages"][:2] + row["messages"][4:], "images": row["images"][:1],
                "image_sizes": row["image_sizes"][:1]}
    scripted = ScriptedModel(tokenizer, replies)
    renderer = GeometryRenderer.for_processor(processor, convention)
    bench = SimpleNamespace(allows_tools=lambda r: True)
    [(final, session)] = generate_with_tools(SimpleNamespace(model=scripted, processor=processor), bench, [eval_row], renderer,
                                             ToolSettings(), tmp_path / "crops", max_new_tokens=64)
    assert final == replies[1] and session.calls == 1 and session.crops[0].box_pixel == (28, 0, 140, 112)
    eval_first, eval_second = (p["input_ids"][0].tolist() for p in scripted.prompts)

    # (c) TRL's GRPO tool loop, with a crop session as the environment's tool
    environment = CropSession(row["images"][0], row_frame(row, 0, renderer), convention)
    trl_prompt, trl_ids, trl_images = trl_tool_loop_ids(processor, row, replies, environment)

    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert sft_ids == trl_ids + newline  # SFT renders "<|im_end|>\n" after the answer; a rollout stops at <|im_end|>
    assert eval_first == trl_prompt
    assert eval_second == trl_ids[: len(eval_second)] and trl_ids[len(eval_second):] == tokenizer(replies[1])["input_ids"] + [tokenizer.eos_token_id]

    # the images: the same pixels, in the same order, at the same (identical) image-token positions
    trl_pixels = processor.image_processor(images=trl_images, return_tensors="pt")
    assert torch.equal(sft["image_grid_thw"], scripted.prompts[1]["image_grid_thw"])
    assert torch.equal(sft["image_grid_thw"], trl_pixels["image_grid_thw"])
    assert torch.equal(sft["pixel_values"], scripted.prompts[1]["pixel_values"])
    assert torch.equal(sft["pixel_values"], trl_pixels["pixel_values"])
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert sum(t == pad for t in sft_ids) == int(sft["image_grid_thw"].prod(dim=1).sum()) // 4  # both images expanded
