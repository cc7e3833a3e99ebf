"""Short names used in configs (``backbone.name: vqvae``) → the class or builder they stand for.

Each registry is a table of ``"module:attr"`` strings, imported on first :meth:`Registry.get`, so
importing this module imports no model or dataset code, and model modules never import it::

    BACKBONES.get("vqvae")      # -> futurelat.models.backbones.vqvae.VQVAE (imported now)
    BACKBONES.get("vqvea")      # KeyError: unknown backbone 'vqvea'; valid backbones: magvit2_fsq, vjepa2, vqvae
    BACKBONES.names()           # ['magvit2_fsq', 'vjepa2', 'vqvae'] (imports nothing)

A component of your own is added by target or by path, before the config that names it is built::

    HEADS.register("my_head", MyHead)                       # a class (or any callable)
    HEADS.register("my_head", "my_package.heads:MyHead")    # or "module:attr", imported on use

    @HEADS.register("my_head")                              # or as a decorator
    class MyHead(Head): ...

or named by its path right in the config (``head.name: my_package.heads:MyHead``), with no registration.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


class Registry:
    """A name → target table for one kind of component (``"backbone"``, ``"head"``, ``"dataset"``).

    Args:
        kind: the component kind, used in error messages (``unknown head 'x'; valid heads: ...``).
        entries: initial ``{name: target}``; a target is a callable (class, builder function) or a
            ``"module:attr"`` string naming one, imported on the first :meth:`get` of its name.

    Raises:
        ValueError: a string target not of the form ``"module:attr"``.
        TypeError: a target that is neither a string nor callable.
    """

    def __init__(self, kind: str, entries: Mapping[str, str | Callable[..., Any]] | None = None):
        self.kind = kind
        self._entries: dict[str, str | Callable[..., Any]] = {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: str | Callable[..., Any] | None = None) -> Any:
        """Add ``target`` under ``name`` and return it; without ``target``, a decorator that does so.

        Registering the same target twice is a no-op (a class and the ``"module:attr"`` string naming
        it are the same target).

        Raises:
            KeyError: ``name`` already names another target (the message names both).
            ValueError / TypeError: a malformed target (see the class docstring).
        """
        if target is None:
            return lambda obj: self.register(name, obj)
        _check_target(target, self.kind, name)
        old = self._entries.get(name)
        if old is not None and _path(old) != _path(target):
            raise KeyError(f"{self.kind} '{name}' is registered twice ({_path(old)} and {_path(target)})")
        if old is None or isinstance(old, str):
            self._entries[name] = target
        return target

    def get(self, name: str) -> Any:
        """The target registered under ``name``, imported if it was given as ``"module:attr"``; a
        ``name`` that is itself a ``"module:attr"`` path (a component of your own) is imported as is.

        Raises:
            KeyError: unknown name; the message lists the valid names.
            ImportError: the ``"module:attr"`` of ``name`` names no attribute of its module (an
                error importing the module itself propagates unchanged).
        """
        if name not in self._entries and ":" in name:
            _check_target(name, self.kind, name)
            return _import(name, self.kind, name)
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} '{name}'; valid {self.kind}s: {', '.join(self.names())} "
                           "(or a 'module:attr' path to your own)")
        target = self._entries[name]
        if isinstance(target, str):
            target = _import(target, self.kind, name)
            self._entries[name] = target
        return target

    def names(self) -> list[str]:
        """The registered names, sorted (imports nothing)."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _check_target(target: Any, kind: str, name: str) -> None:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        if not module or not attr or ":" in attr:
            raise ValueError(f"{kind} '{name}': a target string must be 'module:attr'; got {target!r}")
    elif not callable(target):
        raise TypeError(f"{kind} '{name}': a target must be callable or a 'module:attr' string; "
                        f"got {type(target).__name__}")


def _path(target: str | Callable[..., Any]) -> str:
    """``"module:attr"`` of a target (a string target is its own path)."""
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


def _import(path: str, kind: str, name: str) -> Any:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ImportError(f"{kind} '{name}' names {path!r}, but {module_name} has no attribute {attr!r}") from err


#: Frames ↔ latents (``backbone.name``): classes of :class:`futurelat.models.base.Backbone`.
BACKBONES = Registry("backbone", {
    "vqvae": "futurelat.models.backbones.vqvae:VQVAE",
    "magvit2_fsq": "futurelat.models.backbones.magvit2:MAGVIT2",
    "vjepa2": "futurelat.models.backbones.vjepa2:VJEPA2Backbone",
})

#: Context latents → future latents (``head.name``): classes of :class:`futurelat.models.base.Head`.
HEADS = Registry("head", {
    "mamba": "futurelat.models.heads.mamba:MambaHead",
    "transformer": "futurelat.models.heads.transformer:TransformerHead",
    "flow_dit": "futurelat.models.heads.flow_dit:FlowDiTHead",
})

#: Datasets (``dataset.name``): builders ``f(cfg: DictConfig, split: str) -> Dataset``
#: (see :func:`futurelat.datasets.build_dataset`).
DATASETS = Registry("dataset", {
    "moving_mnist": "futurelat.datasets.moving_mnist:build_moving_mnist",
    "kinetics_400": "futurelat.datasets.kinetics:build_kinetics",
    "video_file": "futurelat.datasets.video_file:build_video_file",
    "steamboat_willie": "futurelat.datasets.steamboat_willie:build_steamboat_willie",
    # latents written by `python -m futurelat.cache`; "latent_cache" is the same reader, for a cache of any source
    "kinetics_400_cached": "futurelat.datasets.latent_cache:build_latent_cache",
    "latent_cache": "futurelat.datasets.latent_cache:build_latent_cache",
})
