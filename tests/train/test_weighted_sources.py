"""data.sources: weighted mixing of record files at load time, seeded like the `mix` builder."""

from __future__ import annotations

import pytest

from helpers import grounding_record
from spatialtune.config import ConfigError, from_dict
from spatialtune.data.dataset import DataSource, load_mixed_records
from spatialtune.runs import RunConfig
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft


@pytest.fixture
def two_files(write_dataset):
    scanqa = write_dataset([grounding_record(f"scanqa-{i}") for i in range(30)], "scanqa.jsonl")
    sqa3d = write_dataset([grounding_record(f"sqa3d-{i}") for i in range(30)], "sqa3d.jsonl")
    return [DataSource(str(scanqa), 0.7), DataSource(str(sqa3d), 0.3)]


def test_sources_are_drawn_in_proportion_to_their_weights_the_same_way_for_a_seed(two_files):
    mixed = load_mixed_records(two_files, seed=0)
    ids = [r.id for r in mixed]
    # the largest total neither file is too small for: 30 / 0.7 → 42 records, 29.4 : 12.6 → 29 : 13 (largest remainder)
    assert len(ids) == len(set(ids)) == 42
    assert sum(i.startswith("scanqa") for i in ids) == 29 and sum(i.startswith("sqa3d") for i in ids) == 13
    assert ids == [r.id for r in load_mixed_records(two_files, seed=0)]  # deterministic
    other = [r.id for r in load_mixed_records(two_files, seed=1)]
    assert other != ids and sorted(other) != sorted(ids)  # another seed: another order and another draw of scanqa
    assert ids[:29] != [i for i in ids if i.startswith("scanqa")]  # shuffled, not one source after the other


def test_a_run_trains_on_the_mix_and_the_config_refuses_both_inputs_or_a_bad_weight(two_files, tmp_path):
    data = from_dict(DataConfig, {"sources": [{"file": s.file, "weight": s.weight} for s in two_files], "max_samples": 4})
    result = run_sft(SFTRecipeConfig(run=RunConfig(dir=str(tmp_path / "run")), data=data,
                                     training=TrainingConfig(max_steps=1, per_device_train_batch_size=2)), progress=False)
    assert result.global_step == 1 and (result.model_dir / "config.json").is_file()
    with pytest.raises(ConfigError, match="data.train_file or data.sources, not both"):
        DataConfig(train_file=two_files[0].file, sources=two_files)
    with pytest.raises(ConfigError, match="weight must be positive"):
        from_dict(DataConfig, {"sources": [{"file": "a.jsonl", "weight": 0}]})
