"""Register every schema in Hydra's ConfigStore as ``base_<name>``, the first entry of the defaults
list of the YAML option that uses it (Hydra's "Structured Config schema" pattern)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from futurelat.config.backbone import MAGVIT2Config, VJEPA2Config, VJEPA2TinyConfig, VQVAEConfig
from futurelat.config.dataset import KineticsConfig, LatentCacheConfig, MovingMNISTConfig, VideoFileConfig
from futurelat.config.head import AnyHeadConfig, FlowDiTConfig, MambaConfig, TransformerConfig
from futurelat.config.run import CacheConfig, EvalConfig, LoggerConfig, RunConfig, WandbLoggerConfig
from futurelat.config.trainer import TrainerSettings

#: (group, name, schema) of every stored node; group None is the primary config's.
SCHEMAS = (
    (None, "base_run", RunConfig),
    ("dataset", "base_moving_mnist", MovingMNISTConfig),
    ("dataset", "base_kinetics_400", KineticsConfig),
    ("dataset", "base_video_file", VideoFileConfig),
    ("dataset", "base_latent_cache", LatentCacheConfig),
    ("backbone", "base_vqvae", VQVAEConfig),
    ("backbone", "base_vjepa2", VJEPA2Config),
    ("backbone", "base_vjepa2_tiny", VJEPA2TinyConfig),
    ("backbone", "base_magvit2_fsq", MAGVIT2Config),
    ("head", "base_mamba", MambaConfig),
    ("head", "base_transformer", TransformerConfig),
    ("head", "base_flow_dit", FlowDiTConfig),
    ("head", "base_head", AnyHeadConfig),
    ("trainer", "base_trainer", TrainerSettings),
    ("eval", "base_eval", EvalConfig),
    ("cache", "base_cache", CacheConfig),
    ("logger", "base_none", LoggerConfig),
    ("logger", "base_wandb", WandbLoggerConfig),
)


def register_configs() -> None:
    """Store :data:`SCHEMAS` in Hydra's ConfigStore (idempotent); call before composing."""
    cs = ConfigStore.instance()
    for group, name, node in SCHEMAS:
        cs.store(group=group, name=name, node=node)
