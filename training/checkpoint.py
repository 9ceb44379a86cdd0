"""Fine-tuning checkpoints without pickles: every tensor (model, optimiser state) in one safetensors file, and
everything else (optimiser groups, scheduler, loss scaler, data position) in a JSON file beside it. Both are
written to temporary names and renamed, JSON last, so that a checkpoint is either complete or absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from locator.errors import DataError

TENSORS, STATE = "checkpoint.safetensors", "checkpoint.json"


def save(directory: Path, modules: dict[str, torch.nn.Module], optimiser: torch.optim.Optimizer,
         extra: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}/{k}": v.detach().cpu().contiguous() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    optimiser_state = optimiser.state_dict()
    for pid, state in optimiser_state["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimiser/{pid}/{key}"] = value.detach().cpu().contiguous()
    scalars = {str(pid): {k: v for k, v in s.items() if not isinstance(v, torch.Tensor)}
               for pid, s in optimiser_state["state"].items()}
    save_file(tensors, str(directory / (TENSORS + ".tmp")))
    os.replace(directory / (TENSORS + ".tmp"), directory / TENSORS)
    state = {"param_groups": optimiser_state["param_groups"], "optimiser_scalars": scalars, **extra}
    (directory / (STATE + ".tmp")).write_text(json.dumps(state))
    os.replace(directory / (STATE + ".tmp"), directory / STATE)


def exists(directory: Path) -> bool:
    return (directory / STATE).is_file() and (directory / TENSORS).is_file()


def load(directory: Path, modules: dict[str, torch.nn.Module], optimiser: torch.optim.Optimizer) -> dict:
    """Restore the modules and the optimiser; returns the rest of the saved state."""
    if not exists(directory):
        raise DataError(f"{directory}: no complete checkpoint to resume from")
    state = json.loads((directory / STATE).read_text())
    tensors = load_file(str(directory / TENSORS))
    for name, module in modules.items():
        module.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(f"{name}/")})
    per_param: dict[int, dict] = {int(pid): dict(s) for pid, s in state.pop("optimiser_scalars").items()}
    for key, value in tensors.items():
        if key.startswith("optimiser/"):
            _, pid, name = key.split("/", 2)
            per_param.setdefault(int(pid), {})[name] = value
    optimiser.load_state_dict({"state": per_param, "param_groups": state.pop("param_groups")})
    return state
