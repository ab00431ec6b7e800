"""Typed configs: YAML load, dotted overrides, type checks and round trips (spatialtune.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from spatialtune.config import ConfigError, apply_overrides, from_dict, load_config, to_dict
from spatialtune.models.adapters import LoraSettings
from spatialtune.train.sft import SFTRecipeConfig


@dataclass
class Inner:
    size: int = 1
    ratio: float = 0.5
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    name: str = "x"
    where: Path = Path("out")
    tags: list[str] = field(default_factory=list)
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# --- load_config: files and defaults ---------------------------------------------------------------


def test_load_config_without_path_gives_defaults():
    assert load_config(SFTRecipeConfig) == SFTRecipeConfig()


def test_load_config_reads_values_from_yaml_file(tmp_path):
    path = write_yaml(
        tmp_path / "run.yaml",
        {"model": {"name": "tiny-qwen2.5-vl"}, "training": {"max_steps": 3}, "run": {"dir": "runs/x"}},
    )
    config = load_config(SFTRecipeConfig, path)
    assert config.model.name == "tiny-qwen2.5-vl"
    assert config.training.max_steps == 3
    assert config.run.dir == "runs/x"


def test_load_config_keeps_defaults_for_keys_absent_from_file(tmp_path):
    path = write_yaml(tmp_path / "run.yaml", {"training": {"max_steps": 3}})
    config = load_config(SFTRecipeConfig, path)
    assert config.training.learning_rate == SFTRecipeConfig().training.learning_rate
    assert config.data == SFTRecipeConfig().data


def test_load_config_accepts_empty_yaml_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(SFTRecipeConfig, path) == SFTRecipeConfig()


def test_load_config_accepts_str_path(tmp_path):
    path = write_yaml(tmp_path / "run.yaml", {"training": {"seed": 7}})
    assert load_config(SFTRecipeConfig, str(path)).training.seed == 7


def test_load_config_missing_file_raises_config_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(SFTRecipeConfig, missing)
    assert str(missing) in str(info.value)


def test_load_config_non_mapping_top_level_raises_config_error(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(SFTRecipeConfig, path)


def test_load_config_error_names_the_file(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"training": {"no_such_key": 1}})
    with pytest.raises(ConfigError) as info:
        load_config(SFTRecipeConfig, path)
    assert str(path) in str(info.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- overrides ----------------------------------------------------------------------------------------


def test_override_int_is_parsed_as_int():
    config = load_config(SFTRecipeConfig, overrides=["training.max_steps=5"])
    assert config.training.max_steps == 5
    assert isinstance(config.training.max_steps, int)


def test_override_scientific_float_becomes_float():
    # YAML 1.1 reads `1e-4` (no dot) as a string; the float field must still get a float.
    assert yaml.safe_load("1e-4") == "1e-4"
    config = load_config(SFTRecipeConfig, overrides=["training.learning_rate=1e-4"])
    assert config.training.learning_rate == pytest.approx(1e-4)
    assert isinstance(config.training.learning_rate, float)


def test_override_int_for_float_field_becomes_float():
    config = load_config(SFTRecipeConfig, overrides=["training.num_train_epochs=3"])
    assert config.training.num_train_epochs == 3.0
    assert isinstance(config.training.num_train_epochs, float)


def test_override_null_sets_optional_field_to_none():
    config = load_config(SFTRecipeConfig, overrides=["data.max_length=null"])
    assert config.data.max_length is None


def test_override_yaml_list_sets_list_field():
    config = load_config(SFTRecipeConfig, overrides=["training.report_to=[wandb, tensorboard]"])
    assert config.training.report_to == ["wandb", "tensorboard"]


def test_override_bool_is_parsed_as_bool():
    config = load_config(SFTRecipeConfig, overrides=["training.bf16=true"])
    assert config.training.bf16 is True


def test_override_value_may_contain_equals_sign():
    config = load_config(SFTRecipeConfig, overrides=["data.train_file=a=b.jsonl"])
    assert config.data.train_file == "a=b.jsonl"


def test_override_wins_over_file_value(tmp_path):
    path = write_yaml(tmp_path / "run.yaml", {"training": {"max_steps": 3}})
    config = load_config(SFTRecipeConfig, path, ["training.max_steps=9"])
    assert config.training.max_steps == 9


def test_later_override_wins_over_earlier():
    config = load_config(SFTRecipeConfig, overrides=["training.seed=1", "training.seed=2"])
    assert config.training.seed == 2


def test_nested_override_creates_optional_lora_section():
    assert SFTRecipeConfig().adapters.lora is None
    config = load_config(SFTRecipeConfig, overrides=["adapters.lora.r=8"])
    assert isinstance(config.adapters.lora, LoraSettings)
    assert config.adapters.lora.r == 8
    assert config.adapters.lora.alpha == LoraSettings().alpha


def test_nested_override_sets_deep_freeze_flag():
    config = load_config(SFTRecipeConfig, overrides=["adapters.freeze.vision_tower=false"])
    assert config.adapters.freeze.vision_tower is False
    assert config.adapters.freeze.merger is False


def test_override_without_equals_raises_config_error():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(SFTRecipeConfig, overrides=["training.max_steps"])


def test_override_with_empty_key_raises_config_error():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(SFTRecipeConfig, overrides=["=5"])


def test_override_through_a_scalar_raises_config_error():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"training": 3}, ["training.max_steps=5"])


def test_apply_overrides_builds_nested_dicts():
    data = apply_overrides({"a": {"keep": 1}}, ["a.b.c=2", "d=x"])
    assert data == {"a": {"keep": 1, "b": {"c": 2}}, "d": "x"}


# --- validation: unknown keys, wrong types, literals --------------------------------------------------


def test_unknown_nested_key_error_names_dotted_key():
    with pytest.raises(ConfigError, match=r"unknown key 'training\.learnin_rate'"):
        load_config(SFTRecipeConfig, overrides=["training.learnin_rate=1e-4"])


def test_unknown_top_level_key_error_names_key():
    with pytest.raises(ConfigError, match=r"unknown key 'trainig'"):
        load_config(SFTRecipeConfig, overrides=["trainig.max_steps=1"])


def test_unknown_key_error_lists_valid_keys():
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(SFTRecipeConfig, overrides=["training.lr=1"])


def test_unknown_key_in_yaml_file_raises_config_error(tmp_path):
    path = write_yaml(tmp_path / "run.yaml", {"data": {"trian_file": "x.jsonl"}})
    with pytest.raises(ConfigError, match=r"data\.trian_file"):
        load_config(SFTRecipeConfig, path)


def test_wrong_type_error_names_dotted_key():
    with pytest.raises(ConfigError, match=r"training\.max_steps"):
        load_config(SFTRecipeConfig, overrides=["training.max_steps=lots"])


def test_non_numeric_string_for_float_field_raises_config_error():
    with pytest.raises(ConfigError, match=r"training\.learning_rate"):
        load_config(SFTRecipeConfig, overrides=["training.learning_rate=fast"])


def test_bool_for_int_field_raises_config_error():
    with pytest.raises(ConfigError, match=r"training\.seed"):
        load_config(SFTRecipeConfig, overrides=["training.seed=true"])


def test_bool_for_float_field_raises_config_error():
    with pytest.raises(ConfigError, match=r"training\.learning_rate"):
        load_config(SFTRecipeConfig, overrides=["training.learning_rate=true"])


def test_float_for_int_field_raises_config_error():
    with pytest.raises(ConfigError, match=r"training\.max_steps"):
        load_config(SFTRecipeConfig, overrides=["training.max_steps=2.5"])


def test_scalar_for_section_raises_config_error():
    with pytest.raises(ConfigError, match=r"expected a section"):
        from_dict(SFTRecipeConfig, {"training": 5})


def test_scalar_for_list_field_raises_config_error():
    with pytest.raises(ConfigError, match=r"training\.report_to"):
        load_config(SFTRecipeConfig, overrides=["training.report_to=wandb"])


def test_wrong_list_item_type_error_names_index():
    with pytest.raises(ConfigError, match=r"tags\[1\]"):
        from_dict(Outer, {"tags": ["ok", 3]})


def test_literal_field_rejects_value_outside_choices():
    with pytest.raises(ConfigError, match=r"data\.on_truncated_image") as info:
        load_config(SFTRecipeConfig, overrides=["data.on_truncated_image=maybe"])
    assert "maybe" in str(info.value)


def test_literal_field_accepts_listed_value():
    config = load_config(SFTRecipeConfig, overrides=["data.on_truncated_image=skip"])
    assert config.data.on_truncated_image == "skip"


def test_wrong_type_inside_optional_section_names_dotted_key():
    with pytest.raises(ConfigError, match=r"adapters\.lora\.r"):
        load_config(SFTRecipeConfig, overrides=["adapters.lora.r=big"])


def test_union_str_or_list_accepts_list():
    config = load_config(SFTRecipeConfig, overrides=["adapters.lora.target_modules=[q_proj, v_proj]"])
    assert config.adapters.lora.target_modules == ["q_proj", "v_proj"]


def test_union_str_or_list_accepts_str():
    config = load_config(SFTRecipeConfig, overrides=["adapters.lora.target_modules=.*q_proj"])
    assert config.adapters.lora.target_modules == ".*q_proj"


# --- from_dict with small test dataclasses ------------------------------------------------------------


def test_from_dict_empty_gives_defaults():
    assert from_dict(Outer, {}) == Outer()


def test_from_dict_converts_str_to_path():
    config = from_dict(Outer, {"where": "a/b"})
    assert config.where == Path("a/b")
    assert isinstance(config.where, Path)


def test_from_dict_null_section_gives_section_defaults():
    assert from_dict(Outer, {"inner": None}).inner == Inner()


def test_from_dict_null_optional_section_stays_none():
    assert from_dict(Outer, {"maybe": None}).maybe is None


def test_from_dict_builds_nested_dataclasses():
    config = from_dict(Outer, {"inner": {"size": 4, "mode": "b"}, "maybe": {"ratio": 2}})
    assert config.inner == Inner(size=4, mode="b")
    assert config.maybe == Inner(ratio=2.0)


def test_from_dict_nested_literal_error_names_dotted_key():
    with pytest.raises(ConfigError, match=r"inner\.mode"):
        from_dict(Outer, {"inner": {"mode": "c"}})


def test_from_dict_rejects_none_for_non_optional_field():
    with pytest.raises(ConfigError, match=r"name"):
        from_dict(Outer, {"name": None})


# --- to_dict and round trips --------------------------------------------------------------------------


def test_to_dict_turns_paths_into_strings():
    data = to_dict(Outer(where=Path("a/b")))
    assert data["where"] == "a/b"


def test_to_dict_output_is_safe_yaml():
    config = load_config(SFTRecipeConfig, overrides=["adapters.lora.r=8", "training.report_to=[wandb]"])
    text = yaml.safe_dump(to_dict(config))
    assert yaml.safe_load(text) == to_dict(config)


def test_round_trip_default_recipe_config_is_equal():
    config = SFTRecipeConfig()
    assert from_dict(SFTRecipeConfig, to_dict(config)) == config


def test_round_trip_customised_recipe_config_is_equal():
    config = load_config(
        SFTRecipeConfig,
        overrides=[
            "adapters.lora.r=8",
            "adapters.lora.target_modules=[q_proj, v_proj]",
            "adapters.freeze.merger=true",
            "data.max_length=null",
            "data.on_truncated_image=skip",
            "training.learning_rate=1e-4",
            "training.report_to=[tensorboard]",
        ],
    )
    assert from_dict(SFTRecipeConfig, to_dict(config)) == config


def test_round_trip_through_yaml_file_is_equal(tmp_path):
    config = load_config(SFTRecipeConfig, overrides=["adapters.lora.r=8", "training.learning_rate=1e-4"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    assert load_config(SFTRecipeConfig, path) == config


def test_round_trip_test_dataclass_with_path_is_equal():
    config = Outer(name="n", where=Path("x/y"), tags=["t"], limit=3, inner=Inner(2, 0.25, "b"), maybe=Inner())
    assert from_dict(Outer, to_dict(config)) == config


def test_the_override_errors_own_example_is_a_valid_key():
    with pytest.raises(ConfigError, match=r"e\.g\. training\.learning_rate=1e-4") as caught:
        load_config(SFTRecipeConfig, overrides=["oops"])
    example = str(caught.value).split("e.g. ")[1].rstrip(")")
    assert load_config(SFTRecipeConfig, overrides=[example]).training.learning_rate == 1e-4
