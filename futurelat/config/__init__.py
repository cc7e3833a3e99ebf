"""futurelat's config schemas: one dataclass per config node, registered in Hydra's ConfigStore.

Every YAML option in ``configs/`` starts its defaults list with the schema it fills
(``base_<name>``), then ``_self_``, and sets only what differs from the schema's defaults, which
are the one place a default lives. OmegaConf checks types and refuses unknown keys, naming them,
while Hydra composes; :func:`check_config` catches the keys ``+key=value`` appends. Call
:func:`register_configs` before composing (``futurelat.main``, ``futurelat.cache`` and the tests do).

    group / module      schemas
    dataset             MovingMNISTConfig, KineticsConfig, LatentCacheConfig (dataset.py)
    backbone            VQVAEConfig, MAGVIT2Config, VJEPA2Config, VJEPA2TinyConfig (backbone.py); their gan:
                        GANConfig (gan.py)
    head                MambaConfig, TransformerConfig, FlowDiTConfig (head.py)
    trainer             TrainerSettings with StageSchedule backbone / head (trainer.py)
    eval, cache, logger EvalConfig, CacheConfig, LoggerConfig, WandbLoggerConfig (run.py)
    (primary)           RunConfig: stages, seed, optimized_metric and the groups (run.py)
"""

from futurelat.config.check import check_config
from futurelat.config.store import SCHEMAS, register_configs

__all__ = ["SCHEMAS", "check_config", "register_configs"]
