"""The torchrun environment for the trainer: process group, device per process, sums over ranks."""

from __future__ import annotations

import os

import torch

from ..errors import CodedResNeXtError


class Dist:
    """torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK); a no-op for one process."""

    def __init__(self, device: str | None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        elif device == "cuda":  # one GPU per process under torchrun
            device = f"cuda:{local}"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CodedResNeXtError(f"--device {device}: CUDA is not available here; use --device cpu")
        self.device = torch.device(device)
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of `t` over processes (a copy; `t` itself for one process)."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            t = t.to(self.device)
        t = t.clone()
        dist.all_reduce(t)
        return t.cpu()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
