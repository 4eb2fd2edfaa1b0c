"""One rank of the DDP test: ``torchrun --nproc_per_node 2 tests/ddp_worker.py CONFIG_JSON``.

Runs :func:`diffusion_core.train.train` on the config, then writes this rank's final weights (``model.*``)
and EMA (``ema.*``) to ``out_dir/rank{RANK}.safetensors``. The file's metadata records what this rank
did: every checkpoint, preview and evaluation it wrote (the trainer's writers are wrapped), its per-step losses, and
the process group it ran in. It writes nothing else, so any other rank-1 file in out_dir is a bug.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusion_core.train.trainer as trainer  # noqa: E402
from diffusion_core.train import TrainConfig, train  # noqa: E402
from diffusion_core.train.runtime import teardown_distributed  # noqa: E402


def main() -> None:
    config = TrainConfig.from_dict(json.loads(sys.argv[1]))
    rank = int(os.environ["RANK"])
    writes: list[list] = []
    real_save = trainer.save_checkpoint

    def logged_save(path, **kwargs):
        writes.append(["checkpoint", str(path), kwargs["step"]])
        return real_save(path, **kwargs)

    trainer.save_checkpoint = logged_save
    # The preview (DDIM over 2,000 points) is slow on a busy CPU and not under test: record it only.
    trainer.preview = lambda model, diffusion, shape, device, path, n=64: writes.append(["preview", str(path)])

    from diffusion_core.evaluation import training_evaluator

    def logged_evaluator(samples, config, *, step, sample_s):  # --eval-every: rank 0's only
        writes.append(["evaluation", step])
        return training_evaluator(samples, config, step=step, sample_s=sample_s)

    result = train(config, progress=False, evaluator=logged_evaluator)
    group = {"initialized": dist.is_initialized(), "world_size": dist.get_world_size() if dist.is_initialized() else 1,
             "backend": str(dist.get_backend()) if dist.is_initialized() else None}
    tensors = {f"model.{k}": v for k, v in result.model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in result.ema_model.state_dict().items()})
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)  # only rank 0 makes it in train()
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(out / f"rank{rank}.safetensors"),
              metadata={"writes": json.dumps(writes), "losses": json.dumps(result.losses.tolist()),
                        "step": str(result.step), "group": json.dumps(group)})
    teardown_distributed()


if __name__ == "__main__":
    main()
