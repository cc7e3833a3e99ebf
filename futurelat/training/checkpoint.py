"""Training checkpoints: atomic writes, ``weights_only`` loads, RNG capture/restore.

A trainer checkpoint is a dict (everything in it loadable by
``torch.load(weights_only=True)``: tensors, dicts, lists, tuples, str, int, float, bool, None)::

    {
        "format": 1,
        "name": "backbone",            # stage name
        "step": 250,                    # completed optimizer steps
        "world_size": 2,
        "model": module.state_dict(),   # unwrapped (no "module." prefix)
        "optimizer": ..., "scheduler": ..., "scaler": ... or None,
        "rng": [capture_rng_state() of rank 0, of rank 1, ...],
        "config_yaml": "...",           # resolved config, OmegaConf YAML, or None
        "rank_digests": [...] or None,  # final checkpoints: state_digest of each rank's module
        "gan": {...},                   # only with backbone.gan: critic, optimizer, scheduler, scaler
    }                                   # (futurelat.training.gan_step.gan_state_dict)

Loading never unpickles arbitrary objects: a file holding anything else is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT_VERSION = 1


def checkpoint_path(run_dir: str | os.PathLike, name: str, kind: str = "last") -> Path:
    """``run_dir/checkpoints/{name}_{kind}.pt`` (``kind`` is ``"last"`` or ``"final"``)."""
    return Path(run_dir) / "checkpoints" / f"{name}_{kind}.pt"


def state_digest(state: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a module's ``state_dict()`` (or of a state dict): names, dtypes, shapes and
    bytes, in order.

    Equal digests on two ranks mean bit-identical weights and buffers; a checkpoint's ``model``
    entry has the digest of the module it was saved from. Costs one pass over the weights
    (copied to the CPU from a GPU).
    """
    sha = hashlib.sha256()
    for name, tensor in (state.state_dict() if isinstance(state, nn.Module) else state).items():
        t = tensor.detach().cpu().contiguous()
        sha.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return sha.hexdigest()


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU, every CUDA device, numpy global, python
    ``random``) as tensors / lists / ints / floats, so ``weights_only`` loading accepts them."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    py_version, py_internal, py_gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": int(py_version), "internal": [int(x) for x in py_internal],
                   "gauss_next": None if py_gauss_next is None else float(py_gauss_next)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are restored for the devices present).

    Raises:
        KeyError: if ``state`` lacks the ``"torch"``, ``"numpy"`` or ``"python"`` entry.
    """
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].cpu().numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]][: torch.cuda.device_count()]
        for i, s in enumerate(cuda_states):
            torch.cuda.set_rng_state(s, i)


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` atomically.

    The bytes go to a temporary file in the same directory, are ``fsync``-ed, and the file
    is ``os.replace``-d onto ``path``: a reader (or a crash) sees the old file or the new
    one, never half a file. On error the temporary file is removed and ``path`` is untouched.

    Returns:
        ``path`` as a :class:`~pathlib.Path` (parent directories are created).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # like mkstemp (O_EXCL, unique name) but with the usual umask-governed permissions
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """``torch.load(path, map_location=map_location, weights_only=True)``.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it).
        pickle.UnpicklingError: the file holds something other than tensors and plain
            containers/scalars (e.g. a pickled class instance); it is refused, not executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f"refusing to load {path}: it is not a plain-tensor checkpoint "
            f"(torch.load(weights_only=True) failed: {err})") from err


def load_module_weights(path: str | os.PathLike, module: nn.Module, *,
                        key: str | Callable[[Mapping[str, Any]], str] = "model",
                        strict: bool = True,
                        map_location: str | torch.device | None = "cpu",
                        check: Callable[[Mapping[str, Any]], None] | None = None) -> nn.Module:
    """Load only the model weights ``checkpoint[key]`` of a trainer checkpoint into ``module``.

    ``key`` may be a function of the whole checkpoint that returns the entry to load (e.g. the EMA
    weights ``"ema_model"`` when the checkpoint has them, :func:`futurelat.training.ema.eval_weights_key`).

    Used e.g. to build a frozen backbone from ``run_dir/checkpoints/backbone_final.pt``.
    ``check``, if given, is called with the whole checkpoint dict before the weights are loaded
    (e.g. :func:`futurelat.training.config_match.check_stored_config`); what it raises propagates.

    Returns:
        ``module`` (its parameters and buffers overwritten in place).

    Raises:
        FileNotFoundError: no file at ``path``.
        KeyError: the checkpoint has no ``key`` entry (message names the path and its keys).
        RuntimeError: (``strict``) missing/unexpected/mis-shaped entries, from
            ``load_state_dict``, prefixed with the path.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    if callable(key) and isinstance(ckpt, Mapping):
        key = key(ckpt)
    if not isinstance(ckpt, Mapping) or key not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise KeyError(f"checkpoint {path} has no {key!r} entry (found: {keys})")
    if check is not None:
        check(ckpt)
    try:
        module.load_state_dict(ckpt[key], strict=strict)
    except RuntimeError as err:
        raise RuntimeError(f"loading {path} into {type(module).__name__}: {err}") from err
    return module
