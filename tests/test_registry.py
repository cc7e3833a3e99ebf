"""``futurelat.registry``: lazy ``"module:attr"`` lookup, users' own components, the unknown-name message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from futurelat.registry import BACKBONES, DATASETS, HEADS, Registry


def test_importing_the_registry_imports_no_model():
    code = ("import sys, futurelat.registry as r; "
            "loaded = [m for m in sys.modules if m.startswith(('futurelat.models', 'futurelat.datasets.'))]; "
            "assert not loaded, loaded; "
            "assert r.HEADS.names() == ['flow_dit', 'mamba', 'transformer']; "
            "assert 'futurelat.models.heads.mamba' not in sys.modules; "
            "cls = r.HEADS.get('mamba'); "
            "assert 'futurelat.models.heads.mamba' in sys.modules and cls.__name__ == 'MambaHead'; "
            "assert 'futurelat.models.heads.transformer' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_builtin_names_resolve_to_their_classes():
    from futurelat.datasets.latent_cache import build_latent_cache
    from futurelat.models.backbones.vqvae import VQVAE
    from futurelat.models.heads.flow_dit import FlowDiTHead

    assert BACKBONES.names() == ["magvit2_fsq", "vjepa2", "vqvae"]
    assert BACKBONES.get("vqvae") is VQVAE and HEADS.get("flow_dit") is FlowDiTHead
    assert DATASETS.get("kinetics_400_cached") is DATASETS.get("latent_cache") is build_latent_cache
    assert "vqvae" in BACKBONES and "vqvea" not in BACKBONES


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match=r"unknown head 'mambo'; valid heads: flow_dit, mamba, transformer"):
        HEADS.get("mambo")
    with pytest.raises(KeyError, match=r"unknown dataset 'mnist'; valid datasets: kinetics_400, "
                                       r"kinetics_400_cached, latent_cache, moving_mnist"):
        DATASETS.get("mnist")


def test_user_components_by_object_by_path_and_as_decorator():
    registry = Registry("widget")

    class Mine:
        pass

    assert registry.register("mine", Mine) is Mine
    registry.register("ordered", "collections:OrderedDict")

    @registry.register("decorated")
    def build(cfg, split):
        return cfg, split

    from collections import OrderedDict

    assert registry.get("mine") is Mine and registry.get("ordered") is OrderedDict
    assert registry.get("decorated")(1, "train") == (1, "train")
    assert registry.names() == ["decorated", "mine", "ordered"]
    registry.register("mine", Mine)  # the same target again: a no-op
    registry.register("ordered", OrderedDict)  # the class a path names is the same target
    assert registry.get("ordered") is OrderedDict


def test_a_module_attr_path_is_a_name_without_registration():
    from collections import OrderedDict

    registry = Registry("widget")
    assert registry.get("collections:OrderedDict") is OrderedDict and registry.names() == []
    with pytest.raises(ImportError, match="collections has no attribute 'Nope'"):
        registry.get("collections:Nope")
    with pytest.raises(ValueError, match="must be 'module:attr'"):
        registry.get("collections:a:b")


def test_a_second_target_under_one_name_is_refused():
    with pytest.raises(KeyError, match=r"head 'mamba' is registered twice \(futurelat.models.heads.mamba:MambaHead"):
        HEADS.register("mamba", type("Other", (), {}))
    with pytest.raises(KeyError, match="registered twice"):
        HEADS.register("mamba", "futurelat.models.heads.transformer:TransformerHead")
    assert HEADS.get("mamba").__name__ == "MambaHead"


def test_malformed_targets_are_refused_early_and_a_missing_attribute_on_use():
    registry = Registry("widget")
    with pytest.raises(ValueError, match=r"widget 'a': a target string must be 'module:attr'; got 'collections'"):
        registry.register("a", "collections")
    with pytest.raises(TypeError, match="must be callable"):
        registry.register("b", 3)
    registry.register("c", "collections:NoSuchThing")
    with pytest.raises(ImportError, match=r"widget 'c' names 'collections:NoSuchThing'"):
        registry.get("c")
    registry.register("d", "futurelat_no_such_module:X")
    with pytest.raises(ModuleNotFoundError):
        registry.get("d")
