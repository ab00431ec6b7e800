"""Constrained decoding at evaluation: generation restricted to a grammar of a benchmark's answer format, so that every
reply parses and validates, whatever the model.

The engine is xgrammar, the structured-generation backend vLLM and SGLang use by default: a grammar (its EBNF dialect)
is compiled once per tokenizer into per-token bitmasks, and its transformers `LogitsProcessor` masks the logits of each
step inside `model.generate` (CPU and CUDA). The processor holds one matcher per sequence, so every `generate` call
needs a fresh one (`constraint_processor`); the processor reads only the tokens generated after the first step, so it
works the same when `generate` starts from `inputs_embeds` (the multi-view model).

Constraints, by name:
- `place-anchor`: the RoomPlan action exactly as `tasks.roomplan.canonical_action_text` writes it —
  `{"action": "place_anchor", "center": [x, y, z], "extent": [x, y, z], "normal": [x, y, z], "scene": "…"}`, keys in
  that (sorted) order, `", "` / `": "` separators and no other whitespace; every number as Python writes a float
  rounded to `PRECISION` (3) decimals with at most two integer digits (|v| < 100 m; no `-0.0`, no trailing zeros);
  `extent` components ≥ 0; `normal` with at least one non-zero component; `scene` 1–`SCENE_MAX_CHARS` (32) characters
  of `[A-Za-z0-9_.:-]` — any scene id of that shape, not the row's own (the constraint is the schema only).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transformers import LogitsProcessorList

from ..registry import Registry
from ..tasks.roomplan import PRECISION, canonical_action_text

if TYPE_CHECKING:
    import xgrammar as xgr  # imported where used: only constrained runs pay for loading it

SCENE_MAX_CHARS = 32
SCENE_CHARS = "A-Za-z0-9_.:-"  # ARKitScenes ids (digits), ScanNet ids (scene0000_00), room-00012
LARGEST_ABS = float("9" * 2 + "." + "9" * PRECISION)  # 99.999: two integer digits, PRECISION decimals


@dataclass(frozen=True)
class Constraint:
    """A named grammar (xgrammar EBNF) and the longest text it accepts, which bounds the tokens a reply needs."""

    name: str
    ebnf: str
    longest_text: str  # a text of maximal length the grammar accepts (tests check that it does)

    @property
    def max_new_tokens(self) -> int:
        """Tokens enough to finish any reply: one per character (the grammar is ASCII, so no token holds less than
        one) plus the stop token; `max_new_tokens` below this could cut a reply short."""
        return len(self.longest_text) + 1


CONSTRAINTS: Registry[Constraint] = Registry("constraint")


def _place_anchor_ebnf() -> str:
    """The grammar of the canonical place_anchor action text (see the module docstring for its bounds)."""
    vector = '"[" {0} ", " {1} ", " {2} "]"'
    return "\n".join([
        'root ::= "{\\"action\\": \\"place_anchor\\", \\"center\\": " center ", \\"extent\\": " extent '
        '", \\"normal\\": " normal ", \\"scene\\": \\"" scene "\\"}"',
        f"center ::= {vector.format('signed', 'signed', 'signed')}",
        f"extent ::= {vector.format('unsigned', 'unsigned', 'unsigned')}",
        # the first non-zero component decides the alternative, so a zero normal has no derivation
        f"normal ::= {vector.format('nonzero', 'signed', 'signed')} | {vector.format('zero', 'nonzero', 'signed')} "
        f"| {vector.format('zero', 'zero', 'nonzero')}",
        'signed ::= unsigned | "-" positive',
        'nonzero ::= "-"? positive',
        "unsigned ::= zero | positive",
        'positive ::= [1-9] [0-9]? "." fraction | "0." nonzero_fraction',
        'fraction ::= "0" | nonzero_fraction',
        f"nonzero_fraction ::= [0-9]{{0,{PRECISION - 1}}} [1-9]",  # Python's shortest repr: no trailing zero
        'zero ::= "0.0"',
        f"scene ::= [{SCENE_CHARS}]{{1,{SCENE_MAX_CHARS}}}",
    ])


def _longest_place_anchor_text() -> str:
    """The canonical text of the action with the longest numbers and scene id the grammar allows."""
    negative, positive = [-LARGEST_ABS] * 3, [LARGEST_ABS] * 3
    action = {"action": "place_anchor", "scene": "x" * SCENE_MAX_CHARS, "center": negative, "normal": negative, "extent": positive}
    return canonical_action_text(action)


CONSTRAINTS.register("place-anchor", Constraint("place-anchor", _place_anchor_ebnf(), _longest_place_anchor_text()))


def get_constraint(name: str) -> Constraint:
    """The constraint registered as `name`; an unknown name raises listing the known ones."""
    return CONSTRAINTS.get(name)


_COMPILED: "weakref.WeakKeyDictionary[Any, dict[tuple, xgr.CompiledGrammar]]" = weakref.WeakKeyDictionary()  # tokenizer → grammars


def stop_token_ids(model, tokenizer) -> list[int]:
    """The ids that end generation: the model's generation config's `eos_token_id` (one or several), else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


def compiled_grammar(constraint: Constraint, tokenizer, vocab_size: int, stop_ids: list[int]) -> "xgr.CompiledGrammar":
    """The constraint compiled for this tokenizer, logits width and stop tokens; compiled once and cached per tokenizer."""
    import xgrammar as xgr

    per_tokenizer = _COMPILED.setdefault(tokenizer, {})
    key = (constraint.name, vocab_size, tuple(stop_ids))
    if key not in per_tokenizer:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        per_tokenizer[key] = xgr.GrammarCompiler(info).compile_grammar(constraint.ebnf)
    return per_tokenizer[key]


def constraint_processor(name: str, model, tokenizer) -> LogitsProcessorList:
    """A fresh logits processor (pass as `model.generate(logits_processor=…)`, one per call: it keeps the matchers'
    state) restricting `model`'s replies to constraint `name`; `model` is the language model whose logits are masked
    (its text config's `vocab_size` is the logits' width, which may exceed `len(tokenizer)`)."""
    from xgrammar.contrib.hf import LogitsProcessor

    vocab_size = model.config.get_text_config().vocab_size
    grammar = compiled_grammar(get_constraint(name), tokenizer, vocab_size, stop_token_ids(model, tokenizer))
    return LogitsProcessorList([LogitsProcessor(grammar)])
