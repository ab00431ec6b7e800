"""Full weights out of a sharded training checkpoint: FSDP's or DeepSpeed ZeRO's, as the Trainer saves them.

Under FSDP with `fsdp_state_dict_type: SHARDED_STATE_DICT` the Trainer writes no `model.safetensors` into
`checkpoint-N/`, but `pytorch_model_fsdp_0/`: a torch.distributed.checkpoint (DCP) folder with one `__<rank>_0.distcp`
file per process and the model's state dict under the key `model` (accelerate's `save_fsdp_model`); with
`FULL_STATE_DICT`, `pytorch_model_fsdp.bin`. Under DeepSpeed ZeRO it writes `global_step<N>/` with one shard file per
process and a `latest` file naming that folder; DeepSpeed's own converter (`zero_to_fp32`) gathers them. Each reader
returns a plain state dict (names as in `model.state_dict()`), read on one process without a process group.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SpatialtuneError

FSDP_SHARDED_DIR = "pytorch_model_fsdp_0"  # accelerate's FSDP_MODEL_NAME + "_0": the DCP folder of the first model
FSDP_FULL_FILE = "pytorch_model_fsdp.bin"  # FULL_STATE_DICT: one torch.save file written by rank 0
FSDP_STATE_KEY = "model"  # save_fsdp_model saves {"model": state_dict}
ZERO_LATEST = "latest"  # DeepSpeed: the name of the global_step<N> folder holding the shards


class ShardedCheckpointError(SpatialtuneError):
    """A sharded checkpoint that cannot be read (no shards, DeepSpeed missing, names that fit no model)."""


def sharded_format(folder: Path) -> str | None:
    """`fsdp` (DCP shards), `fsdp-full`, `zero` (DeepSpeed shards), or None for a folder of plain weights."""
    if (folder / FSDP_SHARDED_DIR / ".metadata").is_file():
        return "fsdp"
    if (folder / FSDP_FULL_FILE).is_file():
        return "fsdp-full"
    if (folder / ZERO_LATEST).is_file() and not any(folder.glob("*.safetensors")):
        return "zero"  # with stage3_gather_16bit_weights_on_model_save the Trainer also wrote plain weights: use them
    return None


def read_fsdp_shards(folder: Path) -> dict[str, torch.Tensor]:
    """The full state dict from a DCP folder (`pytorch_model_fsdp_0/`, or the folder itself), shards joined.

    Each tensor is allocated at its full size from the checkpoint's metadata and DCP fills it from every rank's file,
    on this process alone (`no_dist`), so any number of training processes reads back on one.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    dcp_dir = folder / FSDP_SHARDED_DIR if (folder / FSDP_SHARDED_DIR).is_dir() else folder
    if not (dcp_dir / ".metadata").is_file():
        raise ShardedCheckpointError(f"{dcp_dir}: no torch.distributed.checkpoint folder (no .metadata)")
    metadata = dcp.FileSystemReader(str(dcp_dir)).read_metadata()
    prefix = f"{FSDP_STATE_KEY}."
    full = {
        key: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in metadata.state_dict_metadata.items()
        if isinstance(meta, TensorStorageMetadata) and key.startswith(prefix)
    }
    if not full:
        raise ShardedCheckpointError(f"{dcp_dir}: no tensors under '{FSDP_STATE_KEY}' (is it an optimizer folder?)")
    dcp.load(full, storage_reader=dcp.FileSystemReader(str(dcp_dir)), no_dist=True)
    return {key[len(prefix):]: tensor for key, tensor in full.items()}


def read_zero_shards(folder: Path) -> dict[str, torch.Tensor]:
    """The full fp32 state dict from a DeepSpeed ZeRO checkpoint folder, by DeepSpeed's own `zero_to_fp32`."""
    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError:
        raise ShardedCheckpointError(
            f"{folder}: a DeepSpeed ZeRO checkpoint; reading it needs DeepSpeed (pip install deepspeed), or run "
            f"the zero_to_fp32.py script DeepSpeed saved beside it"
        ) from None
    return dict(get_fp32_state_dict_from_zero_checkpoint(str(folder)))


def read_sharded_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """The full state dict of a sharded checkpoint folder, whichever way it was sharded."""
    found = sharded_format(folder)
    if found == "fsdp":
        return read_fsdp_shards(folder)
    if found == "fsdp-full":
        return torch.load(folder / FSDP_FULL_FILE, map_location="cpu", weights_only=True)
    if found == "zero":
        return read_zero_shards(folder)
    raise ShardedCheckpointError(f"{folder}: no FSDP ({FSDP_SHARDED_DIR}/, {FSDP_FULL_FILE}) or ZeRO ({ZERO_LATEST}) shards")


def load_full_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], where: Path) -> None:
    """Put a gathered state dict into `model` (cast to its dtypes); every weight must be there except tied copies."""
    if any("lora_" in key for key in state_dict):
        raise ShardedCheckpointError(f"{where}: LoRA weights in a sharded checkpoint; export the run's final model/ "
                                     "(saved gathered) instead of this checkpoint")
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    covered = _tied_covered(model, state_dict.keys())
    missing = [key for key in missing if key not in covered]
    if missing or unexpected:
        raise ShardedCheckpointError(
            f"{where}: the sharded weights do not fit the run's model ({type(model).__name__}): "
            f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
            f"{'…' if len(unexpected) > 3 else ''}; export with the run folder the checkpoint came from"
        )
    model.tie_weights()


def _tied_covered(model: torch.nn.Module, saved) -> set[str]:
    """Names of tied parameters (one tensor, several names) of which the checkpoint holds at least one name."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    saved = set(saved)
    return {name for names in groups.values() if len(names) > 1 and saved & set(names) for name in names}
