import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from _training_toys import ListLogger, ToyRegression, ToyRegressor, stage_cfg, trainer_cfg
from futurelat.training.checkpoint import load_checkpoint, state_digest
from futurelat.training.distributed import DistInfo
from futurelat.training.preemption import TrainingInterrupted
from futurelat.training.optim import warmup_cosine
from futurelat.training.trainer import Trainer


def make(tmp_path, module=None, cfg=None, stage=None, **kw):
    """A Trainer on ToyRegression; ``module`` is a module or a factory (called after seeding)."""
    torch.manual_seed(0)
    module = module() if callable(module) and not isinstance(module, nn.Module) else module
    module = module if module is not None else ToyRegressor()
    return Trainer(module, kw.pop("dataset", ToyRegression()), cfg or trainer_cfg(),
                   stage or stage_cfg(), run_dir=tmp_path, name=kw.pop("name", "toy"), **kw)


def test_loss_decreases_and_logs(tmp_path):
    logger = ListLogger()
    trainer = make(tmp_path, cfg=trainer_cfg(log_every=10),
                   stage=stage_cfg(max_steps=60, lr=2e-2, warmup_steps=5),
                   logger=logger, config_to_save={"stage": {"lr": 2e-2}})
    module = trainer.fit()
    assert isinstance(module, ToyRegressor) and trainer.step == 60
    assert [s for s, _ in logger.records] == [10, 20, 30, 40, 50, 60]
    first, last = logger.records[0][1], logger.records[-1][1]
    assert set(first) == {"toy/loss", "toy/mae", "toy/lr", "toy/samples_per_s", "toy/grad_norm",
                           "toy/elapsed_s"}
    assert last["toy/loss"] < 0.25 * first["toy/loss"]
    assert all(math.isfinite(v) and v > 0 for v in last.values())
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [10, 20, 30, 40, 50, 60]
    assert {x["stage"] for x in lines} == {"toy"}
    assert lines[-1]["toy/loss"] == pytest.approx(last["toy/loss"])
    for kind in ("last", "final"):
        ckpt = load_checkpoint(tmp_path / "checkpoints" / f"toy_{kind}.pt")
        assert ckpt["step"] == 60 and "lr: 0.02" in ckpt["config_yaml"]
        assert torch.equal(ckpt["model"]["net.0.weight"], module.net[0].weight)


def test_logged_lr_follows_warmup_cosine(tmp_path):
    logger = ListLogger()
    make(tmp_path, stage=stage_cfg(max_steps=10, lr=0.5, warmup_steps=3, min_lr_ratio=0.2),
         logger=logger).fit()
    lrs = [m["toy/lr"] for _, m in logger.records]
    expected = [0.5 * warmup_cosine(s, max_steps=10, warmup_steps=3, min_lr_ratio=0.2)
                for s in range(10)]
    assert lrs == pytest.approx(expected)


def test_grad_clip_bounds_the_gradient_the_optimizer_sees(tmp_path):
    def run(clip):
        logger, seen = ListLogger(), []
        t = make(tmp_path / str(clip), cfg=trainer_cfg(grad_clip=clip),
                 stage=stage_cfg(max_steps=3), logger=logger)
        t.optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(
            torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in t.params])).item()))
        t.fit()
        return [m["toy/grad_norm"] for _, m in logger.records], seen

    logged, seen = run(0.05)
    assert all(g > 0.05 for g in logged)  # logged: the norm before clipping
    assert seen == pytest.approx([0.05] * 3, rel=1e-4)
    logged, seen = run(None)
    assert seen == pytest.approx(logged, rel=1e-5) and seen[0] > 0.05


def _crash_after(module, n_calls):
    forward = module.forward

    def crashing(**kw):
        if len(module.losses) >= n_calls:
            raise KeyboardInterrupt("simulated crash")
        return forward(**kw)
    module.forward = crashing
    return module


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_is_bit_identical(tmp_path, accum):
    cfg = dict(grad_accum_steps=accum, ckpt_every=3)
    stage = stage_cfg(max_steps=12, warmup_steps=3)
    ref = make(tmp_path / "ref", lambda: ToyRegressor(dropout=0.3), trainer_cfg(**cfg), stage)
    ref.fit()

    crashed = make(tmp_path / "run", lambda: _crash_after(ToyRegressor(dropout=0.3), 7 * accum),
                   trainer_cfg(**cfg), stage)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "toy_last.pt")["step"] == 6

    resumed = make(tmp_path / "run", ToyRegressor(dropout=0.3), trainer_cfg(resume=True, **cfg),
                   stage)
    resumed.fit()
    assert resumed.step == 12
    ref_params = dict(ref.module.named_parameters())
    for k, p in resumed.module.named_parameters():
        assert torch.equal(p, ref_params[k]), k
    ref_opt, res_opt = ref.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert ref_opt["param_groups"] == res_opt["param_groups"]
    for i, st in ref_opt["state"].items():
        for k, v in st.items():
            assert torch.equal(v, res_opt["state"][i][k]), (i, k)
    assert resumed.scheduler.state_dict() == ref.scheduler.state_dict()
    lines = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines][-6:] == list(range(7, 13))


def test_resume_without_rng_restore_differs(tmp_path, monkeypatch):
    """The bit-identity test can fail: skipping the RNG restore changes the dropout masks."""
    stage = stage_cfg(max_steps=4, warmup_steps=1)
    ref = make(tmp_path / "ref", lambda: ToyRegressor(dropout=0.3), trainer_cfg(), stage).fit()
    crashed = make(tmp_path / "run", lambda: _crash_after(ToyRegressor(dropout=0.3), 3),
                   trainer_cfg(ckpt_every=2), stage)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    monkeypatch.setattr("futurelat.training.trainer.restore_rng_state", lambda state: None)
    torch.manual_seed(123)
    resumed = make(tmp_path / "run", ToyRegressor(dropout=0.3), trainer_cfg(resume=True),
                   stage).fit()
    assert not torch.equal(resumed.net[0].weight, ref.net[0].weight)


def test_resume_at_max_steps_skips_training(tmp_path):
    first = make(tmp_path, stage=stage_cfg(max_steps=4)).fit()
    module = ToyRegressor()
    with torch.no_grad():
        module.net[0].weight.zero_()
    t = make(tmp_path, module, trainer_cfg(resume=True), stage_cfg(max_steps=4))
    out = t.fit()
    assert module.losses == []  # no forward pass
    assert torch.equal(out.net[0].weight, first.net[0].weight)


def test_resume_auto_starts_fresh_and_true_insists(tmp_path, caplog):
    t = make(tmp_path / "auto", cfg=trainer_cfg(resume="auto"), stage=stage_cfg(max_steps=2))
    with caplog.at_level("INFO"):
        t.fit()
    assert t.step == 2 and "starting fresh" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"trainer.resume=true but there is no .*toy_last.pt"):
        make(tmp_path / "true", cfg=trainer_cfg(resume=True), stage=stage_cfg(max_steps=2)).fit()


class FrozenEncoderHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 2)

    def forward(self, z, y):
        assert not z.requires_grad
        loss = ((self.head(z) - y) ** 2).mean()
        return {"loss": loss}


def test_prepare_runs_under_no_grad_outside_module(tmp_path):
    encoder = nn.Linear(4, 3)
    encoder.requires_grad_(False)  # frozen backbone
    enc_before = encoder.weight.clone()
    seen = []

    def prepare(batch):
        seen.append((torch.is_grad_enabled(), batch["x"].shape))
        return {"z": encoder(batch["x"]), "y": batch["y"]}

    head = FrozenEncoderHead()
    head_before = head.head.weight.clone()
    t = make(tmp_path, head, stage=stage_cfg(max_steps=3, batch_size=5), prepare=prepare)
    t.fit()
    assert seen == [(False, torch.Size([5, 4]))] * 3
    assert encoder.weight.grad is None and torch.equal(encoder.weight, enc_before)
    assert not torch.equal(head.head.weight, head_before)


def test_prepare_must_return_dict(tmp_path):
    t = make(tmp_path, prepare=lambda b: b["x"])
    with pytest.raises(TypeError, match="prepare must return a dict"):
        t.fit()


def test_fp16_on_cpu_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        make(tmp_path, cfg=trainer_cfg(precision="fp16"))


def test_bf16_autocast_on_cpu_trains(tmp_path):
    t = make(tmp_path, cfg=trainer_cfg(precision="bf16"), stage=stage_cfg(max_steps=3))
    t.fit()
    assert t.step == 3 and all(torch.isfinite(p).all() for p in t.module.parameters())


@pytest.mark.parametrize("stage, match", [(dict(max_steps=0), "max_steps must be > 0"),
                                          (dict(batch_size=0), "batch_size must be > 0"),
                                          (dict(lr=-1.0), "lr must be > 0")])
def test_bad_stage_config(tmp_path, stage, match):
    with pytest.raises(ValueError, match=match):
        make(tmp_path, stage=stage_cfg(**stage))


def test_missing_stage_key_and_bad_setting(tmp_path):
    stage = stage_cfg()
    del stage["warmup_steps"]
    with pytest.raises(KeyError, match="warmup_steps"):
        make(tmp_path, stage=stage)
    with pytest.raises(ValueError, match="trainer.precision"):
        make(tmp_path, cfg=trainer_cfg(precision="fp8"))
    with pytest.raises(ValueError, match="trainer.cpu_malloc"):
        make(tmp_path, cfg=trainer_cfg(cpu_malloc="jemalloc"))
    with pytest.raises(ValueError, match="trainer.resume"):
        make(tmp_path, cfg=trainer_cfg(resume="sometimes"))
    with pytest.raises(ValueError, match="trainer.stop_signals: 'SIGNOPE'"):
        make(tmp_path, cfg=trainer_cfg(stop_signals=["SIGTERM", "SIGNOPE"]))
    with pytest.raises(ValueError, match="trainer.skip_nonfinite"):
        make(tmp_path, cfg=trainer_cfg(skip_nonfinite=-1))


def test_trainer_device_must_match_the_process_device(tmp_path):
    """One device per process: a trainer.device that disagrees with init_distributed's is refused
    (before anything is moved: this fake CUDA process never touches a GPU)."""
    cuda = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cuda", 0), is_main=True)
    with pytest.raises(ValueError, match=r"trainer.device=cpu \(cpu\) but this process was set up for cuda:0"):
        make(tmp_path, cfg=trainer_cfg(device="cpu"), dist=cuda)


class NoLoss(ToyRegressor):
    def forward(self, x, y):
        return {"mse": super().forward(x, y)["loss"]}


class NaNAtStep3(ToyRegressor):
    def forward(self, x, y):
        out = super().forward(x, y)
        if len(self.losses) == 3:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_missing_loss_raises(tmp_path):
    with pytest.raises(KeyError, match=r"stage 'toy'.*without 'loss'"):
        make(tmp_path, NoLoss()).fit()


def test_non_finite_loss_raises_with_step_and_stage(tmp_path):
    t = make(tmp_path, NaNAtStep3(), name="head")
    before = {k: v.clone() for k, v in t.module.state_dict().items()}
    with pytest.raises(FloatingPointError, match=r"stage 'head' at step 3.*'mae'"):
        t.fit()
    assert t.step == 2
    assert all(torch.isfinite(v).all() for v in t.module.state_dict().values())
    assert any(not torch.equal(v, before[k]) for k, v in t.module.state_dict().items())


class NaNGradAtStep2(ToyRegressor):
    def forward(self, x, y):
        out = super().forward(x, y)
        if len(self.losses) == 2:  # sqrt'(0) = inf, times 0: finite loss, NaN gradient
            out["loss"] = out["loss"] + torch.sqrt(self.net[0].weight.sum() * 0.0)
        return out


def test_non_finite_gradient_raises(tmp_path):
    with pytest.raises(FloatingPointError, match=r"gradient norm in stage 'toy' at step 2"):
        make(tmp_path, NaNGradAtStep2()).fit()


class NaNAtSteps(ToyRegressor):
    """A NaN loss at the given 1-based steps (one micro-batch per step)."""

    def __init__(self, steps):
        super().__init__()
        self.bad = set(steps)

    def forward(self, x, y):
        out = super().forward(x, y)
        if len(self.losses) in self.bad:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_non_finite_step_never_overwrites_the_last_checkpoint(tmp_path):
    t = make(tmp_path, NaNAtSteps({5}), cfg=trainer_cfg(ckpt_every=2), stage=stage_cfg(max_steps=8))
    with pytest.raises(FloatingPointError, match=r"step 5.*trainer.skip_nonfinite=N"):
        t.fit()
    assert load_checkpoint(t.checkpoint_path("last"))["step"] == 4
    assert not t.checkpoint_path("final").exists()


def test_skip_nonfinite_skips_up_to_n_steps_in_a_row(tmp_path, caplog):
    logger = ListLogger()
    t = make(tmp_path / "ok", NaNAtSteps({3, 4, 7}), cfg=trainer_cfg(skip_nonfinite=2),
             stage=stage_cfg(max_steps=10), logger=logger)
    with caplog.at_level("WARNING"):
        module = t.fit()
    assert t.step == 10 and t.skipped_steps == 3
    assert caplog.text.count("skipped (") == 3 and "at step 4" in caplog.text
    assert all(torch.isfinite(p).all() for p in module.parameters())
    logged = [(step, m) for step, m in logger.records if "toy/loss" in m]
    assert all(math.isfinite(m["toy/loss"]) for _, m in logged)  # skipped steps stay out of the means
    assert [m["toy/skipped_steps"] for _, m in logger.records if "toy/skipped_steps" in m] == [1, 2, 3]
    with pytest.raises(FloatingPointError, match=r"3 in a row, trainer.skip_nonfinite=2"):
        make(tmp_path / "bad", NaNAtSteps({3, 4, 5}), cfg=trainer_cfg(skip_nonfinite=2),
             stage=stage_cfg(max_steps=10)).fit()


class SignalAtStep(ToyRegressor):
    """Sends this process ``sig`` during the forward pass of step ``at`` (1-based)."""

    def __init__(self, sig, at, dropout=0.3):
        super().__init__(dropout=dropout)
        self.sig, self.at = sig, at

    def forward(self, x, y):
        if len(self.losses) + 1 == self.at:
            os.kill(os.getpid(), self.sig)
        return super().forward(x, y)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_saves_the_step_then_resume_is_bit_identical(tmp_path, sig):
    """The step in flight finishes and is saved as last.pt; the handler that was there before runs
    after the save (submitit's requeue hook, say); resuming ends where an uninterrupted run ends."""
    calls = []

    def before(signum, frame):
        calls.append(signum)

    previous = signal.signal(sig, before)
    try:
        t = make(tmp_path / "run", lambda: SignalAtStep(sig, at=5), stage=stage_cfg(max_steps=12))
        with pytest.raises(TrainingInterrupted) as info:
            t.fit()
        assert calls == [sig]  # forwarded once, after the checkpoint was written
        assert signal.getsignal(sig) is before  # the trainer's handler is gone again
    finally:
        signal.signal(sig, previous)
    assert info.value.step == 5 and info.value.exit_code == 128 + sig
    assert load_checkpoint(t.checkpoint_path("last"))["step"] == 5
    assert not t.checkpoint_path("final").exists()

    resumed = make(tmp_path / "run", lambda: ToyRegressor(dropout=0.3), trainer_cfg(resume="auto"),
                   stage_cfg(max_steps=12))
    resumed.fit()
    ref = make(tmp_path / "ref", lambda: ToyRegressor(dropout=0.3), stage=stage_cfg(max_steps=12)).fit()
    for k, p in resumed.module.state_dict().items():
        assert torch.equal(p, ref.state_dict()[k]), k
    digests = load_checkpoint(resumed.checkpoint_path("final"))["rank_digests"]
    assert digests == [state_digest(ref)]


class SignalStepWithWorkers(SignalAtStep):
    """Like SLURM: the signal reaches this process and its children (the DataLoader workers) too."""

    def forward(self, x, y):
        if len(self.losses) + 1 == self.at:
            tasks = Path("/proc/self/task")
            children = {int(pid) for t in tasks.iterdir() for pid in (t / "children").read_text().split()}
            assert children, "expected DataLoader worker processes"
            for pid in children:
                os.kill(pid, self.sig)
            time.sleep(0.5)  # the workers' signals land (and, were they killed, their deaths are seen) ...
            os.kill(os.getpid(), self.sig)  # ... before the main process's own
        return ToyRegressor.forward(self, x, y)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the workers")
def test_dataloader_workers_outlive_a_stop_signal(tmp_path):
    """The step in flight still needs batches after the signal (3 more micro-batches than the 2 prefetched)."""
    t = make(tmp_path, lambda: SignalStepWithWorkers(signal.SIGTERM, at=9),
             cfg=trainer_cfg(num_workers=1, grad_accum_steps=6), stage=stage_cfg(max_steps=6, batch_size=4))
    with pytest.raises(TrainingInterrupted):
        t.fit()
    assert load_checkpoint(t.checkpoint_path("last"))["step"] == 2


def test_num_workers_and_progress_bar(tmp_path):
    """DataLoader workers give the same batches (hence weights) as in-process loading."""
    a = make(tmp_path / "a", cfg=trainer_cfg(num_workers=1, progress=True),
             stage=stage_cfg(max_steps=3)).fit()
    b = make(tmp_path / "b", stage=stage_cfg(max_steps=3)).fit()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_cpu_malloc_setting_reaches_the_allocator(tmp_path, monkeypatch):
    import futurelat.training.trainer as trainer_module
    calls = []
    monkeypatch.setattr(trainer_module, "configure_cpu_malloc", calls.append)
    make(tmp_path, cfg=trainer_cfg(cpu_malloc="reuse", device="cpu"))
    assert calls == ["reuse"]


class ToyLatentClips(torch.utils.data.Dataset):
    """``n`` items ``{"latents": (5, 16, 4)}``: random latent clips for a tiny head."""

    def __init__(self, n: int = 16):
        self.latents = torch.randn(n, 5, 16, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"latents": self.latents[i]}


def test_gradient_checkpointing_reaches_the_head_and_trains_identically(tmp_path, caplog):
    from futurelat.models.base import LatentSpec, Latents
    from futurelat.models.heads.transformer import TransformerHead

    def run(flag):
        head = lambda: TransformerHead(LatentSpec(latent_dim=4, grid=(4, 4)), 5, context_latents=3, d_model=16,  # noqa: E731
                                       num_layers=2, num_heads=2, dropout=0.1)
        t = make(tmp_path / str(flag), head, cfg=trainer_cfg(gradient_checkpointing=flag),
                 stage=stage_cfg(max_steps=3, batch_size=4), dataset=ToyLatentClips(),
                 prepare=lambda batch: {"z": Latents(batch["latents"])}, name="head")
        return t.fit()

    with caplog.at_level("INFO"):
        checkpointed = run(True)
    assert checkpointed.blocks.gradient_checkpointing
    assert "stage 'head': gradient checkpointing on 2 blocks of TransformerHead" in caplog.text
    plain = run(False)
    assert not plain.blocks.gradient_checkpointing
    for (name, a), b in zip(checkpointed.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name


def test_gradient_checkpointing_warns_for_a_stage_without_blocks(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        make(tmp_path, cfg=trainer_cfg(gradient_checkpointing=True), name="backbone")
    assert "stage 'backbone': trainer.gradient_checkpointing=true, but ToyRegressor has no checkpointable" in caplog.text
    with pytest.raises(ValueError, match=r"trainer.gradient_checkpointing: Value 'maybe' is not a valid bool"):
        make(tmp_path, cfg=trainer_cfg(gradient_checkpointing="maybe"))


def test_a_run_written_under_the_old_stage_name_resumes(tmp_path, caplog):
    """A run directory from before the rename (``checkpoints/tokenizer_last.pt``) resumes as ``backbone``."""
    stage = stage_cfg(max_steps=4)
    old = make(tmp_path, stage=stage, name="tokenizer").fit()
    assert (tmp_path / "checkpoints" / "tokenizer_last.pt").is_file()
    module = ToyRegressor()
    with caplog.at_level("INFO"):
        out = make(tmp_path, module, trainer_cfg(resume=True), stage, name="backbone").fit()
    assert module.losses == [] and torch.equal(out.net[0].weight, old.net[0].weight)
    assert "written under the stage's old name" in caplog.text
