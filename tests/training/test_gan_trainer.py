"""The trainer with ``backbone.gan``: two optimizers, the start step, checkpoints and exact resume, DDP."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from _gan_toys import DDP_ACCUM, DDP_BATCH, DDP_STEPS, TOY_GAN, ToyAutoencoder, ToyClips, gan_ddp_worker
from _training_toys import ListLogger, stage_cfg, trainer_cfg
from futurelat.models.gan.build import build_gan
from futurelat.training.checkpoint import load_checkpoint
from futurelat.training.distributed import DistInfo
from futurelat.training.trainer import Trainer

GAN_KEYS = {"g_adv", "gan_weight", "d_loss", "lecam", "logits_real", "logits_fake", "d_grad_norm", "d_lr"}


def make(run_dir, gan=TOY_GAN, cfg=None, stage=None, module=None, **kw):
    """A Trainer on ToyClips; the autoencoder (``module``: a class or factory) and the discriminator are
    drawn after seeding 0."""
    torch.manual_seed(0)
    module = (module or ToyAutoencoder)()
    built = build_gan(gan, in_channels=1) if gan is not None else None
    return Trainer(module, ToyClips(), cfg or trainer_cfg(), stage or stage_cfg(max_steps=6, batch_size=4),
                   run_dir=run_dir, name="backbone", gan=built, **kw)


def _assert_equal_states(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _assert_equal_optimizers(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i, st in a["state"].items():
        for k, v in st.items():
            assert torch.equal(v, b["state"][i][k]), (i, k)


def test_gan_off_is_the_plain_trainer(tmp_path):
    """``build_gan`` of a disabled config is None, and the trainer then writes what it always wrote."""
    assert build_gan({"enabled": False, "generator_weight": 0.5}, in_channels=1) is None
    logger = ListLogger()
    trainer = make(tmp_path, gan={"enabled": False}, logger=logger)
    trainer.fit()
    assert trainer.gan is None
    assert set(logger.records[0][1]) == {f"backbone/{k}" for k in
                                         ("loss", "l1", "lr", "grad_norm", "samples_per_s", "elapsed_s")}
    assert "gan" not in load_checkpoint(trainer.checkpoint_path("final"))


def test_start_step_gates_the_discriminator_and_the_adversarial_term(tmp_path):
    """Before start_step the generator's updates are the plain trainer's, bit for bit, and the
    discriminator neither trains nor is asked; from it on, two optimizers step each step."""
    logger = ListLogger()
    gan = make(tmp_path / "gan", cfg=trainer_cfg(ckpt_every=2), logger=logger)
    critic0 = {k: v.clone() for k, v in gan.gan.critic.state_dict().items()}
    gan.fit()
    plain = make(tmp_path / "plain", gan=None, cfg=trainer_cfg(ckpt_every=2), stage=stage_cfg(max_steps=2, batch_size=4))
    plain.fit()
    # the generator at step 2 (gan's checkpoint was overwritten at 4 and 6: compare the logs instead)
    logged = {step: m for step, m in logger.records}
    assert not GAN_KEYS & {k.split("/")[1] for k in logged[1] | logged[2]}
    assert GAN_KEYS <= {k.split("/")[1] for k in logged[3]}
    assert logged[3]["backbone/gan_weight"] == pytest.approx(0.1)
    assert logged[3]["backbone/loss"] == pytest.approx(logged[3]["backbone/ae_loss"] + 0.1 * logged[3]["backbone/g_adv"])
    ckpt = load_checkpoint(gan.checkpoint_path("final"))
    assert ckpt["gan"]["scheduler"]["last_epoch"] == 6 - 2  # the discriminator's schedule: 4 steps
    assert ckpt["gan"]["optimizer"]["state"][0]["step"].item() == 4
    assert ckpt["optimizer"]["state"][0]["step"].item() == 6
    assert not torch.equal(ckpt["gan"]["critic"]["discriminator.net.0.weight"], critic0["discriminator.net.0.weight"])
    assert ckpt["gan"]["critic"]["lecam.ema_real"] != 0


def test_generator_matches_the_plain_trainer_before_start_step(tmp_path):
    stage = stage_cfg(max_steps=3, batch_size=4)
    gan = make(tmp_path / "gan", gan={**TOY_GAN, "start_step": 3}, stage=stage)
    critic0 = {k: v.clone() for k, v in gan.gan.critic.state_dict().items()}
    gan.fit()
    plain = make(tmp_path / "plain", gan=None, stage=stage).fit()
    _assert_equal_states(gan.module.state_dict(), plain.state_dict())
    _assert_equal_states(gan.gan.critic.state_dict(), critic0)


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_with_the_gan_is_bit_identical(tmp_path, accum):
    cfg = dict(grad_accum_steps=accum, ckpt_every=3)
    gan = {**TOY_GAN, "adaptive_weight": True, "discriminator": "style3d"}
    ref = make(tmp_path / "ref", gan, trainer_cfg(**cfg))
    ref.fit()

    class Crash(ToyAutoencoder):
        def forward(self, *a, **kw):
            if self.calls >= 4 * accum:  # during step 5, after the save at step 3
                raise KeyboardInterrupt("simulated crash")
            return super().forward(*a, **kw)

    with pytest.raises(KeyboardInterrupt):
        make(tmp_path / "run", gan, trainer_cfg(**cfg), module=Crash).fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "backbone_last.pt")["step"] == 3
    torch.manual_seed(123)  # whatever the RNG: the checkpoint restores it
    resumed = make(tmp_path / "run", gan, trainer_cfg(resume=True, **cfg))
    resumed.fit()
    assert resumed.step == 6
    _assert_equal_states(resumed.module.state_dict(), ref.module.state_dict())
    _assert_equal_states(resumed.gan.critic.state_dict(), ref.gan.critic.state_dict())  # LeCam EMAs too
    _assert_equal_optimizers(resumed.optimizer, ref.optimizer)
    _assert_equal_optimizers(resumed.gan.optimizer, ref.gan.optimizer)
    assert resumed.gan.scheduler.state_dict() == ref.gan.scheduler.state_dict()


def test_perceptual_loss_alone_and_the_generator_contract(tmp_path):
    perceptual = {"pretrained": None, "model_type": "convnext", "resize": 32,
                  "config": {"hidden_sizes": [4, 8, 8, 8], "depths": [1, 1, 1, 1]}}
    logger = ListLogger()
    t = make(tmp_path / "p", gan={"perceptual_weight": 0.5, "perceptual": perceptual},
             stage=stage_cfg(max_steps=2, batch_size=4), logger=logger)
    assert t.gan.critic is None and t.gan.perceptual is not None
    t.fit()
    m = logger.records[-1][1]
    assert m["backbone/loss"] == pytest.approx(m["backbone/ae_loss"] + 0.5 * m["backbone/perceptual"])
    assert not GAN_KEYS & {k.split("/")[1] for k in m}
    assert load_checkpoint(t.checkpoint_path("final"))["gan"]["critic"] is None

    class NoReconstruction(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, frames):
            return {"loss": self.w * frames.mean()}

    with pytest.raises(ValueError, match=r"forward\(frames, return_reconstruction=True\)"):
        make(tmp_path / "bad", module=NoReconstruction)


def test_resume_across_gan_settings_warns(tmp_path, caplog):
    stage = stage_cfg(max_steps=4, batch_size=4)
    crashed = make(tmp_path, gan=None, cfg=trainer_cfg(ckpt_every=2), stage=stage_cfg(max_steps=2, batch_size=4))
    crashed.fit()
    with caplog.at_level("WARNING"):
        t = make(tmp_path, cfg=trainer_cfg(resume=True), stage=stage)
        t.fit()
    assert "holds no discriminator" in caplog.text and t.step == 4


def _single_process(run_dir, gan):
    torch.manual_seed(0)
    info = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), is_main=True)
    t = Trainer(ToyAutoencoder(dropout=0.0), ToyClips(), trainer_cfg(grad_accum_steps=DDP_ACCUM),
                stage_cfg(max_steps=DDP_STEPS, batch_size=2 * DDP_BATCH), run_dir=run_dir, name="backbone",
                dist=info, gan=build_gan(gan, in_channels=1))
    t.fit()
    return t


def test_two_rank_ddp_trains_both_networks(tmp_path):
    """Two gloo ranks: the generator and the discriminator stay identical on both ranks (rank 1 starts from
    other weights), equal to one process on both ranks' batches; the adaptive weight does not break DDP."""
    out = tmp_path / "ddp"
    out.mkdir()
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(gan_ddp_worker, args=(2, str(out)), nprocs=2, join=True, start_method=method)
    for run in ("fixed", "adaptive"):
        r0, r1 = (torch.load(out / f"{run}_rank{r}.pt", weights_only=True) for r in (0, 1))
        _assert_equal_states(r0["model"], r1["model"])
        _assert_equal_states(r0["critic"], r1["critic"])
        assert r1["logged"] is None and "backbone/d_loss" in r0["logged"][-1][1]
        ckpt = load_checkpoint(out / run / "checkpoints" / "backbone_final.pt")
        assert ckpt["world_size"] == 2 and ckpt["gan"]["optimizer"]["state"]
    union = _single_process(tmp_path / "union", {**TOY_GAN, "start_step": 1})
    fixed = torch.load(out / "fixed_rank0.pt", weights_only=True)
    for k, v in union.module.state_dict().items():
        torch.testing.assert_close(fixed["model"][k], v, rtol=1e-4, atol=1e-5)
    for k, v in union.gan.critic.state_dict().items():
        torch.testing.assert_close(fixed["critic"][k], v, rtol=1e-4, atol=1e-5)


class MovingSquares(torch.utils.data.Dataset):
    """``n`` clips ``{"frames": (5, 1, 16, 16)}``: a bright square moving right (a video tokenizer's input)."""

    def __init__(self, n: int = 8):
        self.frames = torch.zeros(n, 5, 1, 16, 16)
        for i in range(n):
            for j in range(5):
                self.frames[i, j, 0, i % 10:i % 10 + 5, j + i % 5:j + i % 5 + 5] = 1.0

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"frames": self.frames[i]}


def test_magvit2_trains_as_a_generator_with_the_3d_discriminator(tmp_path):
    from futurelat.models.backbones.magvit2 import MAGVIT2

    torch.manual_seed(0)
    backbone = MAGVIT2(in_channels=1, hidden_channels=8, channel_mult=[1, 1, 2])
    gan = build_gan({"enabled": True, "discriminator": "style3d", "channels": 4, "num_layers": 2, "start_step": 1,
                     "adaptive_weight": True}, in_channels=1)
    logger = ListLogger()
    t = Trainer(backbone, MovingSquares(), trainer_cfg(), stage_cfg(max_steps=2, batch_size=2), run_dir=tmp_path,
                name="backbone", logger=logger, gan=gan)
    t.fit()
    last = logger.records[-1][1]
    assert last["backbone/gan_weight"] != pytest.approx(0.1) and last["backbone/gan_weight"] > 0  # adaptive
    assert torch.isfinite(torch.tensor([last[f"backbone/{k}"] for k in ("d_loss", "g_adv", "logits_fake")])).all()
    assert load_checkpoint(t.checkpoint_path("final"))["gan"]["optimizer"]["state"]
