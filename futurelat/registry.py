"""Short names used in configs (``backbone.name: vqvae``) → model classes.

    @BACKBONES.register("vqvae")
    class VQVAE(Backbone): ...

    BACKBONES.get("vqvae")      # -> VQVAE
    BACKBONES.get("vqvea")      # KeyError: unknown backbone 'vqvea'; valid: vqvae, ...
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


class Registry:
    """A name → class table for one kind of component (``"backbone"``, ``"head"``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, type] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(cls: T) -> T:
            if name in self._entries and self._entries[name] is not cls:
                raise KeyError(f"{self.kind} '{name}' is registered twice "
                               f"({self._entries[name].__qualname__} and {cls.__qualname__})")
            self._entries[name] = cls
            return cls

        return decorator

    def get(self, name: str) -> type:
        """The class registered under ``name``.

        Raises:
            KeyError: unknown name; the message lists the valid names.
        """
        _import_builtin_models()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} '{name}'; valid {self.kind}s: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        _import_builtin_models()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self.names()


BACKBONES = Registry("backbone")
HEADS = Registry("head")


def _import_builtin_models() -> None:
    """Import the modules whose classes register themselves (idempotent)."""
    import futurelat.models.backbones  # noqa: F401
    import futurelat.models.heads  # noqa: F401
