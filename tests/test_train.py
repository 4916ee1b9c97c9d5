"""Training: a short run, exact stop-and-resume, torchrun/DDP with gloo, and clear config errors."""

import json
import os
import shutil
import subprocess
import sys
import typing

import pytest
import torch
import yaml

import litesr
from litesr.cli import main
from litesr.train import ConfigError, TrainConfig, Trainer
from conftest import DATA

T91 = DATA / "train" / "T91"
TINY = {"c_elan": 30, "m_elan": 2}  # one ELAB block of C=30: the loop is what is tested, not the model


def tiny_yaml(folder) -> str:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({"model_config": TINY}))
    return str(path)


@pytest.fixture(scope="module")
def few_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    for name in ["t1.bmp", "t2.bmp", "t3.bmp", "t5.bmp"]:
        shutil.copy(T91 / name, folder / name)
    return folder


def small_config(images, out, **kw) -> TrainConfig:
    values = dict(arch="elan-light", scale=2, model_config=TINY, train_data=[str(images)], iters=20, batch_size=2,
                  patch_size=32,
                  lr=2e-4, workers=0, log_every=5, ema_decay=0.9, out=str(out), device="cpu")
    values.update(kw)
    return TrainConfig.from_sources(None, **values)


def test_short_run_writes_loadable_checkpoint(few_images, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--config", tiny_yaml(tmp_path), "--arch", "elan-light", "--scale", "2",
                 "--train-data", str(few_images), "--iters", "20",
                 "--batch-size", "2", "--patch-size", "32", "--workers", "1", "--log-every", "10", "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    model = litesr.load_model(out / "last.safetensors")
    assert model.scale == 2 and model.config["c_elan"] == 30
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"step": 20' in lines[-1]
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 20


def test_stop_and_resume_equals_uninterrupted(few_images, tmp_path):
    straight = Trainer(small_config(few_images, tmp_path / "a"), progress=False)
    straight.run()
    first = Trainer(small_config(few_images, tmp_path / "b"), progress=False)
    first.run(stop_at=9)  # as if killed after step 9's checkpoint
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["step"] == 9
    resumed = Trainer(small_config(few_images, tmp_path / "b"), resume=True, progress=False)
    assert resumed.step == 9
    resumed.run()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for key, value in straight.ema.state_dict().items():
        assert torch.equal(value, resumed.ema.state_dict()[key]), key


def test_torchrun_gloo_two_processes(few_images, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "litesr",
           "train", "--config", tiny_yaml(tmp_path), "--arch", "elan-light", "--scale", "2",
           "--train-data", str(few_images), "--iters", "6",
           "--batch-size", "4", "--patch-size", "32", "--workers", "0", "--log-every", "3", "--out", str(out),
           "--device", "cpu", "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["last.safetensors"]
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 6
    litesr.load_model(out / "last.safetensors")


@pytest.mark.parametrize("args, message", [
    (["--arch", "nosuch", "--train-data", "x"], "unknown model 'nosuch'"),
    (["--arch", "elan-light", "--scale", "3", "--patch-size", "64", "--train-data", "x"], "multiple of the scale 3"),
    (["--arch", "elan-light"], "no training data"),
    (["--arch", "elan-light", "--train-data", "/nonexistent/folder"], "training data folder not found"),
    (["--config", "/nonexistent.yaml"], "config file not found"),
    (["--arch", "elan-light", "--train-data", "x", "--hr-scales", "1", "1.5"], "hr_scales must be factors in (0, 1]"),
])
def test_bad_flags_give_one_clear_line(args, message, tmp_path, capsys):
    rc = main(["train", *args, "--out", str(tmp_path / "r"), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "model.yaml"
    cfg.write_text(yaml.safe_dump({"arch": "elan-light", "train_data": ["x"], "model_config": {"depth": 3}}))
    assert main(["train", "--config", str(cfg)]) == 2
    assert "model_config key(s) depth do not apply to elan" in capsys.readouterr().err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"arch": "elan-light", "lerning_rate": 1e-3}))
    assert main(["train", "--config", str(cfg)]) == 2
    assert "unknown config key(s): lerning_rate" in capsys.readouterr().err
    cfg.write_text("arch: [unclosed")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_resume_does_not_need_the_init_weights(few_images, tmp_path):
    init = tmp_path / "init.safetensors"
    litesr.save_model(litesr.create_model("elan-light", 2, **TINY), init)
    Trainer(small_config(few_images, tmp_path / "r", iters=2, init_weights=str(init)), progress=False).run()
    init.unlink()  # e.g. a run folder moved to another machine
    resumed = Trainer(small_config(few_images, tmp_path / "r", iters=3, init_weights=str(init)), resume=True,
                      progress=False)
    assert resumed.step == 2


def test_resume_rules(few_images, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint"):
        Trainer(small_config(few_images, tmp_path / "none"), resume=True)
    Trainer(small_config(few_images, tmp_path / "r", iters=2), progress=False).run()
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        Trainer(small_config(few_images, tmp_path / "r"))


def test_packaged_recipes_parse():
    from litesr.train_config import packaged_configs, read_recipe

    names = packaged_configs()
    assert {"elan-light_x4", "elan_x4", "esrt_x4", "grformer_x4", "swinir-light_x4"} <= set(names)
    for name in names:
        config = TrainConfig.from_sources(name, train_data=None if "train_data" in read_recipe(name) else ["HR"])
        assert config.patch_size % config.scale == 0


def test_paired_hr_lr_folders(tmp_path):
    from conftest import BENCHMARKS

    config = small_config(BENCHMARKS / "Set5" / "HR", tmp_path / "paired", iters=3,
                          train_lr_data=str(BENCHMARKS / "Set5" / "LR_bicubic" / "X2"))
    trainer = Trainer(config, progress=False)
    trainer.run()
    assert torch.load(tmp_path / "paired" / "state.pt", weights_only=True)["step"] == 3
    with pytest.raises(ValueError, match="has 5 images but"):
        from litesr.data.training import load_paired_folders

        load_paired_folders(BENCHMARKS / "Set5" / "HR", BENCHMARKS / "Set14" / "HR", 2)


def test_diverged_run_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(few_images, tmp_path):
    out = tmp_path / "run"
    Trainer(small_config(few_images, out, iters=10), progress=False).run(stop_at=5)
    good = torch.load(out / "state.pt", weights_only=True)["model"]
    trainer = Trainer(small_config(few_images, out, iters=10, grad_clip=0.0), resume=True, progress=False)
    trainer.scheduler.base_lrs = [1e36]  # the resumed schedule would restore lr 2e-4; force a blow-up
    with pytest.raises(FloatingPointError, match="diverged"):
        trainer.run()
    kept = torch.load(out / "state.pt", weights_only=True)
    assert kept["step"] == 5 and all(torch.equal(good[k], kept["model"][k]) for k in good)


def test_array_cache_memory_maps_and_trains_identically(few_images, tmp_path):
    import numpy as np

    from litesr.data.training import load_hr_folders

    cache = tmp_path / "cache"
    plain = load_hr_folders([few_images], 2, min_hr_size=32)
    first = load_hr_folders([few_images], 2, min_hr_size=32, cache_dir=cache)
    again = load_hr_folders([few_images], 2, min_hr_size=32, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 2 * len(plain)  # HR + LR per image, written once
    for a, b, c in zip(plain, first, again):
        assert isinstance(c.hr, np.memmap) and isinstance(c.lr, np.memmap)
        assert np.array_equal(a.hr, c.hr) and np.array_equal(a.lr, c.lr) and np.array_equal(b.lr, c.lr)
    # an edited image gets a fresh entry
    edited = tmp_path / "edited"
    shutil.copytree(few_images, edited)
    load_hr_folders([edited], 2, cache_dir=cache)
    count = len(list(cache.glob("*.npy")))
    os.utime(edited / "t1.bmp", ns=(0, 10**18))
    load_hr_folders([edited], 2, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == count + 2

    a = Trainer(small_config(few_images, tmp_path / "a", iters=4), progress=False)
    a.run()
    b = Trainer(small_config(few_images, tmp_path / "b", iters=4, cache_dir=str(cache)), progress=False)
    b.run()
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_hr_scales_add_matlab_downscaled_copies(few_images, tmp_path):
    import numpy as np

    from litesr.data.imresize import imresize, modcrop
    from litesr.data.training import load_hr_folders
    from litesr.io import read_image

    plain = load_hr_folders([few_images], 2, min_hr_size=32)
    cache = tmp_path / "cache"
    for cache_dir in (None, cache, cache):  # computed, written to the cache, read back from it
        pairs = load_hr_folders([few_images], 2, min_hr_size=32, hr_scales=[1.0, 0.7], cache_dir=cache_dir)
        assert [p.name for p in pairs] == [n for p in plain for n in (p.name, p.name + "@0.7")]
        for a, b in zip(plain, pairs[::2]):  # factor 1 is the plain data, bit for bit
            assert np.array_equal(a.hr, b.hr) and np.array_equal(a.lr, b.lr)
        small = pairs[1]
        hr = modcrop(imresize(read_image(few_images / plain[0].name), 0.7), 2)
        assert np.array_equal(small.hr, hr) and np.array_equal(small.lr, imresize(hr, 0.5))
    assert len(list(cache.glob("*.npy"))) == 4 * len(plain)  # HR, LR, HR@0.7, LR@0.7 per image
    # copies smaller than the patch are left out, the originals kept
    t1 = min(read_image(few_images / "t1.bmp").shape[:2])
    assert [p.name for p in load_hr_folders([few_images], 2, min_hr_size=t1 - t1 % 2, hr_scales=[1.0, 0.5])
            if p.name.startswith("t1")] == ["t1.bmp"]


def test_overrides_on_resume_apply(few_images, tmp_path):
    first = Trainer(small_config(few_images, tmp_path / "r", schedule="cosine", warmup_iters=0), progress=False)
    first.run(stop_at=10)
    # the documented way out of a diverged run: resume with a lower lr (and a longer schedule)
    resumed = Trainer(small_config(few_images, tmp_path / "r", schedule="cosine", warmup_iters=0, lr=5e-5,
                                   iters=40, grad_clip=0.5), resume=True, progress=False)
    expected = 5e-5 * resumed.scheduler.lr_lambdas[0](10)
    assert resumed.scheduler.base_lrs == [5e-5]
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    resumed.run(stop_at=11)
    factor = resumed.scheduler.lr_lambdas[0](11)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5 * factor)


def test_plain_resume_keeps_the_saved_lr(few_images, tmp_path):
    first = Trainer(small_config(few_images, tmp_path / "p", schedule="cosine"), progress=False)
    first.run(stop_at=7)
    saved = first.optimizer.param_groups[0]["lr"]
    resumed = Trainer(small_config(few_images, tmp_path / "p", schedule="cosine"), resume=True, progress=False)
    assert resumed.optimizer.param_groups[0]["lr"] == saved


def test_resuming_a_finished_run_says_why(few_images, tmp_path, capsys):
    Trainer(small_config(few_images, tmp_path / "f", iters=5), progress=False).run()
    rc = main(["train", "--out", str(tmp_path / "f"), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "already reached its 5 iterations" in err and "--iters N" in err


def test_grad_clip_flag_reaches_the_config(few_images, tmp_path):
    out = tmp_path / "g"
    assert main(["train", "--config", tiny_yaml(tmp_path), "--scale", "2", "--train-data", str(few_images),
                 "--iters", "2", "--batch-size", "2", "--patch-size", "32", "--workers", "0", "--grad-clip", "0.25",
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["grad_clip"] == 0.25


def test_loss_option_picks_the_pixel_loss(few_images, tmp_path, monkeypatch):
    """l1 by default; ``loss: l2`` trains on the mean squared error, also when given on resume (an L2 fine-tune of
    an L1 run)."""
    from litesr import train

    used = []
    spies = {name: (lambda f, name=name: lambda a, b: used.append(name) or f(a, b))(f)
             for name, f in train.PIXEL_LOSSES.items()}
    monkeypatch.setattr(train, "PIXEL_LOSSES", spies)
    Trainer(small_config(few_images, tmp_path / "l", iters=2), progress=False).run()
    assert used == ["l1", "l1"]
    used.clear()
    Trainer(small_config(few_images, tmp_path / "l", iters=4, loss="l2"), resume=True, progress=False).run()
    assert used == ["l2", "l2"]
    assert yaml.safe_load((tmp_path / "l" / "config.yaml").read_text())["loss"] == "l2"


def test_log_lines_when_stderr_is_not_a_terminal(few_images, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "litesr", "train", "--config", tiny_yaml(tmp_path), "--scale", "2", "--train-data",
           str(few_images), "--iters", "6", "--batch-size", "2", "--patch-size", "32", "--workers", "0",
           "--log-every", "3", "--val-every", "6", "--val-data", str(DATA / "benchmarks"), "--out",
           str(tmp_path / "l"), "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert any(line.startswith("step 3/6  loss") for line in lines)
    assert any(line.startswith("step 6 validation: Set5") and "dB" in line for line in lines)
    assert not any("\r" in line for line in lines) and len(lines) < 10  # no bar redrawn per iteration


def test_sigterm_to_the_process_group_checkpoints_and_exits_cleanly(few_images, tmp_path):
    import signal
    import time

    out = tmp_path / "t"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "litesr", "train", "--config", tiny_yaml(tmp_path), "--scale", "2", "--train-data",
           str(few_images), "--iters", "100000", "--batch-size", "2", "--patch-size", "32", "--workers", "1",
           "--log-every", "2", "--ckpt-minutes", "100", "--out", str(out), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=os.setpgrp)  # a process group of its own, signalled below as a whole
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # the trainer and its data worker alike, as a scheduler would
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]  # checkpointed, but not done: not a success
    step = torch.load(out / "state.pt", weights_only=True)["step"]
    assert step >= 2 and f"stopped at step {step} of 100000, checkpointed" in err


def test_recipes_extend_each_other(tmp_path):
    from litesr.train_config import CONFIG_DIR, read_recipe

    x2, x4 = read_recipe("elan-light_x2"), read_recipe("elan-light_x4")
    assert x2 == {**x4, "scale": 2}
    assert read_recipe("elan-light_x3") == {**x4, "scale": 3, "patch_size": 255}
    for path in CONFIG_DIR.glob("*.yaml"):  # packaged recipes name no path of this repository
        assert "../" not in path.read_text() and "shared/" not in path.read_text(), path.name
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nlr: 1.0e-3\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="in a circle: a.yaml -> b.yaml -> a.yaml"):
        read_recipe(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: nowhere\n")
    with pytest.raises(FileNotFoundError, match="config file not found: nowhere"):
        read_recipe(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("extends: elan-light_x4_cpu\nscale: 2\npatch_size: 64\n")  # packaged base
    assert TrainConfig.from_sources(tmp_path / "d.yaml", train_data=["HR"]).lr == 4e-4


def test_every_config_field_has_its_flag(capsys):
    import dataclasses

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert (flag in text) == f.metadata.get("cli", True), flag


def test_flags_reach_the_config(few_images, tmp_path):
    out = tmp_path / "flags"
    assert main(["train", "--config", tiny_yaml(tmp_path), "--scale", "2", "--train-data", str(few_images),
                 "--iters", "1", "--batch-size", "2", "--patch-size", "32", "--workers", "0", "--betas", "0.8", "0.9",
                 "--milestones", "5", "7", "--min-lr", "1e-6", "--val-sets", "Set5,Set14", "--hr-scales", "1", "0.8",
                 "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["betas"] == [0.8, 0.9] and saved["milestones"] == [5, 7] and saved["min_lr"] == 1e-6
    assert saved["val_sets"] == ["Set5", "Set14"] and saved["model_config"] == TINY
    assert saved["hr_scales"] == [1.0, 0.8] and '"images": 8' in (out / "metrics.jsonl").read_text()


def test_precision_is_the_one_word_and_old_run_folders_still_resume(few_images, tmp_path):
    config = small_config(few_images, tmp_path / "w", precision="auto")
    assert config.precision == "auto" and "amp" not in config.to_dict()
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text(yaml.safe_dump({**config.to_dict(), "precision": None, "amp": "off"}))
    values = yaml.safe_load(legacy.read_text())
    del values["precision"]
    legacy.write_text(yaml.safe_dump(values))
    assert TrainConfig.from_sources(legacy).precision == "fp32"  # amp: off, as run folders before 2026-11-30 say
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, auto"):
        small_config(few_images, tmp_path / "x", precision="fp16")


def test_init_weights_by_name(few_images, tmp_path):
    """A name from the weights table (the old spelling elan-light_x4 too: the default x4, Fried Rice Lab's)."""
    config = small_config(few_images, tmp_path / "i", model_config={}, init_weights="elan-light_x4")
    trainer = Trainer(config, progress=False)
    shipped = litesr.load_model("elan-light-x4-frl").state_dict()
    assert torch.equal(trainer.model.state_dict()["head.0.weight"], shipped["head.0.weight"])
    assert trainer.skipped_init == ["tail.0.bias", "tail.0.weight"]  # the x2 tail starts fresh


def test_train_only_trains_the_tail_and_keeps_the_body_and_its_statistics(few_images, tmp_path):
    trainer = Trainer(small_config(few_images, tmp_path / "t", train_only=[r"^tail\."], iters=6), progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    after = trainer.model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed and all(k.startswith("tail.") for k in changed), changed  # BN running stats included
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {
        id(p) for n, p in trainer.model.named_parameters() if n.startswith("tail.")}
    with pytest.raises(ConfigError, match="matches no parameter"):
        Trainer(small_config(few_images, tmp_path / "u", train_only=["^nothing"]), progress=False)
    with pytest.raises(ConfigError, match="not a valid regex"):
        small_config(few_images, tmp_path / "v", train_only=["("])
def test_resume_without_a_run_says_there_is_none(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "--out", str(out), "--resume"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and f"no run to resume in {out}" in err[0] and "training data" not in err[0], err
    assert not out.exists()


def test_a_failed_start_leaves_no_run_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    assert main(["train", "--config", tiny_yaml(tmp_path), "--train-data", str(empty), "--out", str(out),
                 "--device", "cpu", "--workers", "0", "--quiet"]) == 2
    assert "no images" in capsys.readouterr().err
    assert not out.exists()


def test_defaults_fit_the_device_and_the_run_says_what_it_needs(few_images, tmp_path, capsys):
    """With no batch or patch given, a CPU run takes 16 x 128² (64 x 256², the GPU recipe, was OOM-killed at 22 GB
    on a CPU), says so up front with its precision and memory, and counts images too small for the patch."""
    from litesr.train_config import DEVICE_DEFAULTS

    assert DEVICE_DEFAULTS["cpu"] == (16, 128) and DEVICE_DEFAULTS["cuda"] == (64, 256)
    config = TrainConfig.from_sources(None, train_data=[str(few_images)], scale=3, device="cpu",
                                      out=str(tmp_path / "x3"), model_config=TINY)
    assert config.batch_size is None and config.patch_size is None
    Trainer(config, progress=False)
    assert config.batch_size == 16 and config.patch_size == 126  # a multiple of the scale
    out = tmp_path / "run"
    assert main(["train", "--config", tiny_yaml(tmp_path), "--scale", "2", "--train-data", str(few_images),
                 "--iters", "1", "--workers", "0", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    head = next(line for line in err.splitlines() if line.startswith("train elan-light x2"))
    assert "batch 16, patch 128 (the batch and patch default for a cpu), fp32 on cpu, about" in head, head
    assert "GiB of memory" in head
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["batch_size"] == 16 and saved["patch_size"] == 128  # a resume trains with the same sizes


def test_images_smaller_than_the_patch_are_counted_not_silently_dropped(few_images, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", tiny_yaml(tmp_path), "--scale", "2", "--train-data", str(few_images),
                 "--iters", "1", "--batch-size", "2", "--patch-size", "160", "--workers", "0", "--out", str(out),
                 "--device", "cpu"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "left out" in line]
    assert len(notes) == 1 and "2 of 4 training images are smaller than the 160-px HR patch" in notes[0], notes


def test_train_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "total iterations (default 500000)" in text and "base learning rate (default 0.0002)" in text
    assert "64 on a GPU, 16 on a CPU" in text and "256 on a GPU, 128 on a CPU" in text


def test_a_fresh_trainer_validates(few_images, tmp_path):
    """The trainer's log exists from its construction: validating before (or without) ``run`` logs and scores."""
    out = tmp_path / "v"
    trainer = Trainer(small_config(few_images, out, val_data=str(DATA / "benchmarks")), progress=False)
    assert not out.exists()  # building a trainer writes nothing
    record = trainer.validate()
    assert record["step"] == 0 and set(record["val"]) == {"Set5"} and record["val_psnr_Set5"] > 10
    assert trainer.best_psnr == record["val_psnr_Set5"] and (out / "best.safetensors").is_file()
    assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == [record]
    trainer.run(stop_at=1)  # a run after it logs on into the same file
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # step 1 logs nothing (log_every 5)
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 1


def test_flag_types_come_from_the_field_types():
    """Each flag's values are parsed with the element type of its field's real type, whatever the spelling of the
    annotation; a type no flag can parse fails loudly instead of parsing wrongly."""
    import dataclasses

    from litesr.cli.train import flag_type, flag_types

    for hint, element in [(int, int), (typing.Optional[float], float), (str | None, str), (list[int], int),
                          (typing.Optional[list[float]], float), (tuple[float, float], float),
                          (tuple[int, ...], int), (typing.Union[None, str], str)]:
        assert flag_type(hint) is element, hint
    for hint in (bool, dict[str, typing.Any], tuple[int, str], int | str, list[bool], typing.Any):
        with pytest.raises(TypeError, match="no command-line type"):
            flag_type(hint)

    @dataclasses.dataclass
    class Recipe:  # annotations as strings (resolved in this module), spelled as TrainConfig's are not
        a: "typing.Optional[int]" = None
        b: "list[float] | None" = None
        c: "tuple[str, ...]" = ()
        d: "dict[str, int]" = dataclasses.field(default_factory=dict, metadata={"cli": False})
        e: "list[str]" = dataclasses.field(default_factory=list, metadata={"type": str.upper})

    assert flag_types(Recipe) == {"a": int, "b": float, "c": str, "e": str.upper}


def _conforms(value, hint) -> bool:
    """``value`` is of type ``hint`` (None, list, tuple, Optional; bool is not an int here)."""
    import types

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_conforms, value, args))
    if hint is type(None):
        return value is None
    return isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))


def test_every_flag_parses_a_value_of_its_type():
    import dataclasses
    import types

    from litesr.cli import build_parser

    samples = {int: "7", float: "0.25", str: "word"}
    hints = typing.get_type_hints(TrainConfig)
    parser = build_parser()
    for f in dataclasses.fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        hint = hints[f.name]
        inner = [a for a in typing.get_args(hint) if a is not type(None)] \
            if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
        element = typing.get_args(inner[0])[0] if typing.get_args(inner[0]) else inner[0]
        nargs = f.metadata.get("nargs")
        value = str(f.metadata["choices"][-1]) if "choices" in f.metadata else samples[element]
        values = [value] * (2 if nargs in ("+", 2) else 1)
        parsed = getattr(parser.parse_args(["train", "--" + f.name.replace("_", "-"), *values]), f.name)
        if typing.get_origin(inner[0]) is tuple:
            parsed = tuple(parsed)  # argparse gives a list; TrainConfig.from_sources makes it the tuple
        elif f.name == "val_sets":
            parsed = [parsed]  # one "A,B" word, split by TrainConfig.from_sources
        assert _conforms(parsed, hint), (f.name, parsed, hint)
