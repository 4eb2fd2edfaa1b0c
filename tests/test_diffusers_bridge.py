"""The diffusers bridge, offline: ``export --to diffusers`` and ``--checkpoint FOLDER`` against diffusers itself.

* import: a ``UNet2DModel`` built from a config with random weights (nothing downloaded), saved with
  ``save_pretrained``, read by ``load_diffusers``, gives the same outputs (1e-5 relative, float32);
* export: our checkpoint written as a folder loads in ``DDPMPipeline.from_pretrained``, and whole DDPM samples (the
  pipeline itself) and DDIM samples (the pipeline's network and scheduler in diffusers' loop) agree with our
  samplers from the same noise (1e-4 relative);
* scheduler configs translate both ways (the same alpha_bar) and the timesteps of the spacings both sides have
  are identical;
* export -> import gives bit-identical weights, and the CLI samples the folder as it samples the checkpoint;
* every refused case is refused with its one-line message.

Relative error here is max |ours - theirs| / max |theirs|.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffusion_core import ddim_sample, ddpm_sample
from diffusion_core.errors import InvalidInput
from diffusion_core.nn import UNetConfig, build_unet, get_preset
from diffusion_core.schedule import spaced_timesteps
from diffusion_core.train import TrainConfig, load_checkpoint, save_checkpoint
from diffusion_core.train.diffusers_format import export_diffusers, load_diffusers
from diffusion_core.train.diffusers_scheduler import diffusion_from_scheduler
from support import run_cli

diffusers = pytest.importorskip("diffusers", reason="diffusers (the 'peers' extra) is not installed: the bridge's "
                                "parity with diffusers cannot be checked")
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def rel_err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    ours, theirs = torch.as_tensor(ours).double(), torch.as_tensor(theirs).double()
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def randomize(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random weights for every tensor (the zero-initialised layers included, so every path is exercised): weights
    N(0, 1/fan_in), so activations stay O(1) through the depth of the network, biases N(0, 0.05^2), norm scales
    about 1."""
    g = torch.Generator().manual_seed(seed)

    def draw(name: str, v: torch.Tensor) -> torch.Tensor:
        z = torch.randn(v.shape, generator=g)
        if v.ndim > 1:
            return z / v[0].numel() ** 0.5
        return 1 + 0.05 * z if "norm" in name and name.endswith("weight") else 0.05 * z

    return {k: draw(k, v) for k, v in state.items()}


# UNet2DModel configs written out as diffusers users write them: the layout of google/ddpm-cifar10-32 shrunk to our
# 'tiny' and 'digits-8' presets (with symmetric downsample padding, our presets' default).
TINY_DIFFUSERS = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
                      down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                      attention_head_dim=16, norm_num_groups=4, norm_eps=1e-6, freq_shift=1, flip_sin_to_cos=False,
                      downsample_padding=1, dropout=0.0)
DIGITS_DIFFUSERS = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64), layers_per_block=1,
                        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None, norm_num_groups=8,
                        norm_eps=1e-6, freq_shift=1, flip_sin_to_cos=False, downsample_padding=1, dropout=0.1)


def save_diffusers_folder(folder, unet_config: dict, seed: int = 0, **scheduler) -> UNet2DModel:
    unet = UNet2DModel(**unet_config)
    unet.load_state_dict(randomize(unet.state_dict(), seed))
    unet.eval().save_pretrained(folder / "unet")  # safetensors by default
    DDPMScheduler(**scheduler).save_pretrained(folder / "scheduler")
    return unet


# google/ddpm-cifar10-32's layout (Ho et al.'s CIFAR-10 network: our ddpm-cifar10 preset) in the form Google's
# converted DDPM checkpoints take: TF's right-and-bottom downsample padding (downsample_padding=0, as the published
# config of google/ddpm-cat-256 shows). Written out here, with random weights: nothing is downloaded.
DDPM_CIFAR10_DIFFUSERS = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                              layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                                                    "DownBlock2D"),
                              up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                              attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6, freq_shift=1,
                              flip_sin_to_cos=False, downsample_padding=0, act_fn="silu", center_input_sample=False,
                              mid_block_scale_factor=1, time_embedding_type="positional", dropout=0.0)


@pytest.mark.parametrize("config,preset,classes", [(TINY_DIFFUSERS, "tiny", 0), (TINY_DIFFUSERS, "tiny", 4),
                                                   (DIGITS_DIFFUSERS, "digits-8", 0),
                                                   (dict(TINY_DIFFUSERS, downsample_padding=0), "tiny", 0),
                                                   (DDPM_CIFAR10_DIFFUSERS, "ddpm-cifar10", 0)])
def test_import_unet2dmodel_gives_its_outputs(tmp_path, config, preset, classes):
    config = dict(config, num_class_embeds=classes + 1 if classes else None)
    unet = save_diffusers_folder(tmp_path, config)
    imported = load_diffusers(tmp_path)
    overrides = {"in_channels": config["in_channels"], "num_classes": classes, "dropout": config["dropout"],
                 "downsample_padding": config["downsample_padding"]}
    assert imported.model_config == {"kind": "unet", **get_preset(preset, **overrides).to_dict()}
    ours = imported.network()
    g = torch.Generator().manual_seed(1)
    size = config["sample_size"]
    x = torch.randn(6, config["in_channels"], size, size, generator=g)
    t = torch.tensor([0, 1, 17, 250, 731, 999])
    labels = torch.tensor([0, 1, 2, 3, 4, 4]) if classes else None  # 4: our null label, row K of K + 1
    with torch.no_grad():
        theirs = unet(x, t, class_labels=labels).sample
        err = rel_err(ours(x, t, labels), theirs)
    assert theirs.abs().max() > 0.5 and err < 1e-5, err
    assert imported.class_names == [str(k) for k in range(classes)]


def make_checkpoint(path, *, parameterization="eps", variance="fixed_large", schedule="linear", T=1000,
                    model_config: dict | None = None, classes: int = 0, train_path: str = "vp", seed: int = 0):
    """A checkpoint with random raw weights and different random EMA weights (no training needed)."""
    config = TrainConfig(dataset="digits", model="tiny", path=train_path, parameterization=parameterization,
                         variance=variance, schedule=schedule, num_timesteps=T, class_cond=classes > 0,
                         vlb_weight=0.001 if variance == "learned_range" else 0.0)
    if model_config is None:
        cfg = get_preset("tiny", in_channels=1, num_classes=classes, learn_sigma=variance == "learned_range")
        model_config = {"kind": "unet", **cfg.to_dict()}
    fields = {k: v for k, v in model_config.items() if k != "kind"}
    if model_config["kind"] == "unet":
        with torch.device("meta"):
            shapes = build_unet(UNetConfig.from_dict(fields)).state_dict()
    else:
        from diffusion_core.nn import build_mlp

        shapes = build_mlp(fields).state_dict()
    extra = {"class_names": [str(k) for k in range(classes)]} if classes else {}
    return save_checkpoint(path, step=1, train_config=config.to_dict(), model_config=model_config,
                           model=randomize(shapes, seed), ema=randomize(shapes, seed + 1), extra=extra)


def exported(tmp_path, **kwargs):
    ck = make_checkpoint(tmp_path / "ck.safetensors", **kwargs)
    out = tmp_path / "out"
    export_diffusers(ck, out)
    return load_checkpoint(ck), out


def our_model_and_diffusion(ckpt):
    from diffusion_core.train import load_model

    return load_model(ckpt), TrainConfig.from_dict(ckpt.train_config).diffusion()


def to_pipeline_images(x: torch.Tensor) -> np.ndarray:
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("parameterization,variance,schedule", [("eps", "fixed_large", "linear"),
                                                                ("v", "fixed_small", "cosine"),
                                                                ("x0", "fixed_large", "quadratic"),
                                                                ("eps", "learned_range", "sigmoid")])
def test_export_whole_ddpm_pipeline_sample_agrees(tmp_path, parameterization, variance, schedule):
    ckpt, out = exported(tmp_path, parameterization=parameterization, variance=variance, schedule=schedule)
    pipe = DDPMPipeline.from_pretrained(out)  # the local folder: nothing downloaded
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=3, generator=torch.Generator().manual_seed(5), num_inference_steps=20,
                  output_type="np").images
    model, diffusion = our_model_and_diffusion(ckpt)
    g = torch.Generator().manual_seed(5)
    x_T = torch.randn(3, 1, 8, 8, generator=g)
    ours = ddpm_sample(model, diffusion, x_T, steps=20, generator=g, progress=False).sample
    err = rel_err(to_pipeline_images(ours), theirs)
    assert np.ptp(theirs) > 0.05 and err < 1e-4, err


@pytest.mark.parametrize("spacing,parameterization", [("leading", "eps"), ("trailing", "v")])
def test_export_ddim_sample_agrees_with_diffusers_loop(tmp_path, spacing, parameterization):
    ckpt, out = exported(tmp_path, parameterization=parameterization, schedule="cosine")
    pipe = DDPMPipeline.from_pretrained(out)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing=spacing)
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    scheduler.set_timesteps(25)
    x = x_T.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:  # diffusers' loop; our clip recomputes eps from the clipped x0, as this flag does
            x = scheduler.step(pipe.unet(x, t).sample, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    model, diffusion = our_model_and_diffusion(ckpt)
    ours = ddim_sample(model, diffusion, x_T, steps=25, spacing=spacing, progress=False).sample
    err = rel_err(ours, x)
    assert x.abs().max() > 0.3 and err < 1e-4, err


def test_export_class_conditional_maps_labels_and_null_row(tmp_path):
    ckpt, out = exported(tmp_path, classes=3)
    unet = UNet2DModel.from_pretrained(out / "unet").eval()
    assert unet.config.num_class_embeds == 4  # K = 3 classes and our null label
    model, _ = our_model_and_diffusion(ckpt)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    t, labels = torch.tensor([3, 300, 600, 999]), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        err = rel_err(model(x, t, labels), unet(x, t, class_labels=labels).sample)
        err_null = rel_err(model(x, t, None), unet(x, t, class_labels=torch.full((4,), 3)).sample)
    assert err < 1e-5 and err_null < 1e-5, (err, err_null)


@pytest.mark.parametrize("kwargs", [dict(), dict(classes=3, parameterization="v", variance="learned_range"),
                                    dict(model_config={"kind": "unet", **get_preset("tiny", in_channels=1,
                                                                                   downsample_padding=0).to_dict()})])
def test_export_then_import_is_bit_identical(tmp_path, kwargs):
    ckpt, out = exported(tmp_path, **kwargs)
    back = load_diffusers(out)
    assert back.model_config == ckpt.model_config
    assert back.weights.keys() == ckpt.ema.keys()
    assert all(torch.equal(back.weights[k], ckpt.ema[k]) for k in ckpt.ema)  # EMA by default
    ours = TrainConfig.from_dict(ckpt.train_config).diffusion()
    assert torch.equal(back.diffusion.schedule.alphas_cumprod, ours.schedule.alphas_cumprod)
    assert (back.diffusion.parameterization, back.diffusion.variance, back.diffusion.clip) == \
        (ours.parameterization, ours.variance, ours.clip)
    raw = tmp_path / "raw"
    export_diffusers(tmp_path / "ck.safetensors", raw, ema=False)
    raw_weights = load_diffusers(raw).weights
    assert all(torch.equal(raw_weights[k], ckpt.model[k]) for k in ckpt.model)
    assert not all(torch.equal(raw_weights[k], ckpt.ema[k]) for k in ckpt.ema)  # the two sets differ


@pytest.mark.parametrize("schedule", ["linear", "cosine", "quadratic", "sigmoid"])
@pytest.mark.parametrize("T", [1000, 250])
def test_scheduler_configs_translate_both_ways(tmp_path, schedule, T):
    _, out = exported(tmp_path, schedule=schedule, T=T, parameterization="v")
    theirs = DDPMScheduler.from_pretrained(out / "scheduler")
    ours = TrainConfig(dataset="digits", schedule=schedule, num_timesteps=T).diffusion()
    # diffusers takes the cumulative product in float32, we in float64: a few float32 ulps apart after T factors
    assert rel_err(ours.schedule.alphas_cumprod, theirs.alphas_cumprod) < 2e-6
    assert theirs.config.prediction_type == "v_prediction" and theirs.config.clip_sample
    back = diffusion_from_scheduler(dict(theirs.config))  # diffusers' own config (defaults filled in) read back
    assert torch.equal(back.schedule.alphas_cumprod, ours.schedule.alphas_cumprod)


@pytest.mark.parametrize("name,kwargs", [("linear", dict(beta_start=2e-4, beta_end=0.03)),
                                         ("scaled_linear", dict(beta_start=0.00085, beta_end=0.012)),
                                         ("squaredcos_cap_v2", {}), ("sigmoid", dict(beta_start=1e-4, beta_end=0.02))])
def test_diffusers_scheduler_configs_read_as_their_schedule(name, kwargs):
    for rescale in (False, True):
        theirs = DDPMScheduler(num_train_timesteps=500, beta_schedule=name, rescale_betas_zero_snr=rescale,
                               prediction_type="v_prediction", **kwargs)
        ours = diffusion_from_scheduler(dict(theirs.config)).schedule.alphas_cumprod
        ac = theirs.alphas_cumprod
        assert rel_err(ours, ac) < 2e-6, (name, rescale)
        assert (ours[-1] == 0 and ac[-1] == 0) if rescale else (ours[-1] > 0 and ac[-1] > 0)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_timesteps_of_every_shared_spacing(spacing):
    """The spacings both sides have (DDPMScheduler and DDIMScheduler: linspace, leading, trailing; log-snr and
    karras are ours only), every step count for T = 1000 and T = 37: identical indices.

    Observed with diffusers 0.42.1: its trailing grid, ``round(arange(T, 0, -T/n)) - 1``, gets one element too
    many for some n (62 of the 1,000 at T = 1000, e.g. n = 61) because the float arange overshoots: an extra
    timestep -1, outside the schedule, at the end. Ours has n indices in 0..T-1; the rest must agree."""
    overshoots = 0
    for T in (1000, 37):
        for n in range(1, T + 1):
            ours = spaced_timesteps(T, n, spacing)
            for cls in (DDPMScheduler, DDIMScheduler):
                scheduler = cls(num_train_timesteps=T, timestep_spacing=spacing)
                scheduler.set_timesteps(n)
                theirs = scheduler.timesteps.flip(0).long()
                if spacing == "trailing" and len(theirs) == n + 1:
                    assert theirs[0] == -1, (T, n)
                    theirs, overshoots = theirs[1:], overshoots + 1
                assert torch.equal(theirs, ours), (cls.__name__, T, n)
    assert overshoots == (2 * 62 if spacing == "trailing" else 0)  # both schedulers, T = 1000 only


def test_cli_export_then_sample_the_folder_with_every_sampler(tmp_path, capsys):
    ck = make_checkpoint(tmp_path / "ck.safetensors", classes=2, parameterization="v", schedule="cosine")
    out = tmp_path / "pipe"
    code, stdout, err = run_cli(["export", "--checkpoint", ck, "--to", "diffusers", out], capsys)
    assert code == 0 and "EMA weights" in stdout, err
    assert json.loads((out / "model_index.json").read_text())["unet"] == ["diffusers", "UNet2DModel"]
    for sampler in ("ddim", "ddpm", "dpmpp-2m", "heun"):
        for i, source in enumerate((ck, out)):
            code, _, err = run_cli(["sample", "--checkpoint", source, "--out", tmp_path / f"{sampler}{i}.png",
                                    "--num", 4, "--steps", 8, "--sampler", sampler, "--label", 1, "--guidance", 2,
                                    "--no-progress"], capsys)
            assert code == 0, err
        a, b = np.load(tmp_path / f"{sampler}0.npy"), np.load(tmp_path / f"{sampler}1.npy")
        assert np.ptp(a) > 0.1 and np.abs(a - b).max() <= 1e-5, sampler


def test_cli_export_refuses_an_existing_folder_and_leaves_no_temp(tmp_path, capsys):
    ck = make_checkpoint(tmp_path / "ck.safetensors")
    out = tmp_path / "pipe"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(["export", "--checkpoint", ck, "--to", "diffusers", out], capsys)
    assert code == 2 and "exists and is not empty; pass --overwrite" in err and len(err.splitlines()) == 1
    assert (out / "keep.txt").read_text() == "mine"
    code, stdout, err = run_cli(["export", "--checkpoint", ck, "--to", "diffusers", out, "--overwrite", "--no-ema"],
                                capsys)
    assert code == 0 and "raw weights" in stdout, err
    assert sorted(p.name for p in out.iterdir()) == ["model_index.json", "scheduler", "unet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors", "pipe"]  # no temp folder left


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    import diffusion_core.train.diffusers_format as fmt

    ck = make_checkpoint(tmp_path / "ck.safetensors")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fmt, "save_file", full_disk)
    with pytest.raises(OSError):
        export_diffusers(ck, tmp_path / "pipe")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]


REFUSED_EXPORTS = [
    (dict(train_path="rectified-flow", parameterization="velocity"), "trained on path='rectified-flow'"),
    (dict(model_config={"kind": "mlp", "dim": 2}), "holds an mlp model; only U-Net models can be exported"),
    (dict(parameterization="edm"), "parameterization='edm' has no diffusers prediction_type"),
    (dict(model_config={"kind": "unet", **UNetConfig(image_size=8, in_channels=1, base_channels=16,
                                                      channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
                                                      num_heads=2, norm_groups=4).to_dict()}),
     "num_heads=2 over attention layers of widths [16, 32]"),
]


@pytest.mark.parametrize("kwargs,message", REFUSED_EXPORTS)
def test_export_refusals(tmp_path, kwargs, message):
    ck = make_checkpoint(tmp_path / "ck.safetensors", **kwargs)
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("(", r"\(")) as e:
        export_diffusers(ck, tmp_path / "pipe")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "pipe").exists()


REFUSED_IMPORTS = [
    (dict(unet=dict(downsample_padding=2)), "downsample_padding=2 does not map"),
    (dict(unet=dict(flip_sin_to_cos=True)), "flip_sin_to_cos=True does not map"),
    (dict(unet=dict(norm_eps=1e-5)), "norm_eps=1e-05 does not map"),
    (dict(unet=dict(down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"))),
     "attention_head_dim=16 does not map"),  # 1 head at width 16, 2 in the 32-wide mid block: ours has one count
    (dict(unet=dict(up_block_types=("UpBlock2D", "AttnUpBlock2D"))), "up_block_types="),
    (dict(unet=dict(out_channels=6)), "out_channels=6 does not map"),
    (dict(unet=dict(class_embed_type="timestep")), "class_embed_type='timestep' does not map"),
    (dict(scheduler=dict(variance_type="learned")), "variance_type='learned' does not map"),
    (dict(scheduler=dict(thresholding=True)), "thresholding=true does not map"),
    (dict(scheduler=dict(clip_sample_range=2.0)), "clip_sample_range=2.0 does not map"),
]


@pytest.mark.parametrize("change,message", REFUSED_IMPORTS)
def test_import_refusals_name_the_field(tmp_path, change, message):
    save_diffusers_folder(tmp_path, dict(TINY_DIFFUSERS, **change.get("unet", {})), **change.get("scheduler", {}))
    with pytest.raises(InvalidInput, match=message) as e:
        load_diffusers(tmp_path)
    assert "\n" not in str(e.value)


def test_import_refusals_of_the_folder(tmp_path):
    save_diffusers_folder(tmp_path, TINY_DIFFUSERS)
    config = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(dict(config, beta_schedule="laplace")))
    with pytest.raises(InvalidInput, match="beta_schedule='laplace' does not map"):
        load_diffusers(tmp_path)
    (tmp_path / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(InvalidInput, match="has no scheduler/scheduler_config.json"):
        load_diffusers(tmp_path)
    bare = tmp_path / "unet"  # a bare UNet2DModel folder takes the scheduler config beside it
    (bare / "scheduler_config.json").write_text(json.dumps(config))
    assert load_diffusers(bare).model_config["base_channels"] == 16
    (bare / "diffusion_pytorch_model.safetensors").rename(bare / "diffusion_pytorch_model.bin")
    with pytest.raises(InvalidInput, match="only the pickled .bin, which is not read"):
        load_diffusers(bare)


def test_init_from_an_exported_folder_starts_from_its_weights(tmp_path):
    from diffusion_core.train import train

    ck = make_checkpoint(tmp_path / "ck.safetensors", parameterization="v", schedule="cosine")
    export_diffusers(ck, tmp_path / "pipe")
    config = TrainConfig(dataset="digits", model="tiny", parameterization="v", schedule="cosine", steps=1,
                         batch_size=4, lr=1e-12, device="cpu", out_dir=str(tmp_path / "run"), compile=False)
    result = train(config, init_from=tmp_path / "pipe", progress=False)
    after = load_checkpoint(result.checkpoint)
    ema = load_checkpoint(ck).ema
    assert all(torch.allclose(after.model[k], ema[k], atol=1e-6) for k in ema)  # one step at lr 1e-12 moves nothing
    with pytest.raises(InvalidInput, match="predicts 'v'; pass --parameterization v"):
        train(config.replace(parameterization="eps", out_dir=str(tmp_path / "run2")), init_from=tmp_path / "pipe")
    with pytest.raises(InvalidInput, match="another noise schedule than --schedule linear"):
        train(config.replace(schedule="linear", out_dir=str(tmp_path / "run3")), init_from=tmp_path / "pipe")


def test_model_configs_written_before_downsample_padding_still_match():
    """The field the TF-padded checkpoints needed: an older checkpoint's model config (without it) is the same
    network as today's, for --resume and --init-from alike."""
    from diffusion_core.train.models import normalized_model_config

    today = {"kind": "unet", **get_preset("tiny").to_dict()}
    before = {k: v for k, v in today.items() if k != "downsample_padding"}
    assert UNetConfig.from_dict({k: v for k, v in before.items() if k != "kind"}).downsample_padding == 1
    assert normalized_model_config(before) == normalized_model_config(today) == today
    assert normalized_model_config({**today, "downsample_padding": 0}) != today


def test_a_run_folder_is_not_read_as_a_diffusers_folder(tmp_path, capsys):
    """A run's folder also holds a config.json; `sample --checkpoint RUN_FOLDER` keeps its own message."""
    from diffusion_core.train.diffusers_format import is_diffusers_folder

    make_checkpoint(tmp_path / "checkpoint.safetensors")
    (tmp_path / "config.json").write_text("{}")
    assert not is_diffusers_folder(tmp_path)
    code, _, err = run_cli(["sample", "--checkpoint", tmp_path, "--out", tmp_path / "s.png"], capsys)
    assert code == 2 and "is a folder; give the" in err
    save_diffusers_folder(tmp_path / "pipe", TINY_DIFFUSERS)
    assert is_diffusers_folder(tmp_path / "pipe") and is_diffusers_folder(tmp_path / "pipe" / "unet")
