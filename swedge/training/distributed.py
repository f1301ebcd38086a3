"""Several processes under ``torchrun``: process group, one device per local rank, DDP, sharded PK batches.

Gradient reduction, per width. The methods run one forward and one backward per width per step, and SFSC
reads each width's ``.grad`` right after its backward to project across widths. DistributedDataParallel
does exactly what that needs: every forward through the DDP module prepares a reduction, and the backward
that follows all-reduces (averages) the gradients before it returns, so after each ``ctx.backward`` every
rank holds the same mean gradient of that width. Three settings make it correct here:
- ``find_unused_parameters=True``: a width leaves the other widths' private BN (and, for the separate-model
  baselines, other members) out of its graph. DDP then leaves a parameter that no rank used with
  ``.grad`` None, as in a single process, which is what the projection's merge reads as "unused".
- ``gradient_as_bucket_view=False`` (the default, stated for the reader): SFSC keeps each width's ``.grad``
  tensors and sets ``.grad`` to None before the next width; bucket views would be overwritten by the next
  reduction.
- accumulation without ``no_sync``: ``sfsc-sum`` lets widths accumulate into ``.grad``; DDP reduces the
  accumulated value, which is the running sum of per-width means because the part already there is
  identical on every rank.
``tests/test_distributed.py`` checks the gradient after each of several backward passes in one step against
an explicit all-reduce, and a 2-process run against a 1-process run that sees the same global batch.
DDP also broadcasts rank 0's parameters and buffers at wrapping time (and buffers before each forward), so
the ranks start identical and keep rank 0's BN running statistics. Projection order comes from
``StepContext.rng()`` (seed, step), the same on every rank.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from swedge.errors import SwedgeError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """The one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def init(device: str) -> tuple[World, str]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns the world and this
    process's device (``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    local = int(os.environ["LOCAL_RANK"])
    cuda = torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    if cuda:
        gpus, per_node = torch.cuda.device_count(), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if gpus == 0:
            raise SwedgeError("--device cuda under torchrun, but this process sees no CUDA GPU "
                              "(check CUDA_VISIBLE_DEVICES, or train with --device cpu)")
        if per_node > gpus:
            # NCCL refuses two ranks on one GPU; gloo reduces CUDA tensors through host memory. Slow, but it
            # runs the whole DDP path on a one-GPU machine (benchmarks/gpu_smoke.sh uses it for that).
            backend = "gloo"
            if local == 0:
                print(f"swedge: {per_node} processes share {gpus} GPU(s): the gloo backend reduces gradients "
                      "through host memory (NCCL needs one GPU per process); use it to test, not for speed",
                      file=sys.stderr)
        device = f"cuda:{local % gpus}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size()), device


def shutdown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.barrier()  # no rank tears its connections down while another still talks to it
        dist.destroy_process_group()


class TrainForward(nn.Module):
    """``model.forward_train`` as a module's forward, which is the call DDP intercepts.

    ``chunks`` > 1 runs the batch as that many equal chunks and concatenates the outputs: batch-norm
    statistics per chunk, as that many processes would compute them (see ``StepBatches``)."""

    def __init__(self, model: nn.Module, chunks: int = 1):
        super().__init__()
        self.model, self.chunks = model, chunks

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.chunks == 1:
            return self.model.forward_train(images)
        parts = [self.model.forward_train(c) for c in images.chunk(self.chunks)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def wrap(model: nn.Module, world: World, device: str, chunks: int = 1) -> nn.Module:
    """The module whose call is ``ctx.forward``: DDP over ``TrainForward`` when distributed."""
    net = TrainForward(model, chunks)
    if not world.active:
        return net
    ids = [torch.device(device)] if torch.device(device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True,
                                               gradient_as_bucket_view=False)


def mean_over_ranks(values: dict[str, float], world: World, device: str) -> dict[str, float]:
    """Average scalar logs over the ranks (same keys in the same order on every rank)."""
    if not world.active or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / world.size).tolist()))


class StepBatches(Sampler[list]):
    """Batch sampler over a ``PKSampler``'s batches: one list per step for this process.

    Every rank draws the same PK batch order (same seed and epoch); each step's global batch is the next
    ``world * shards`` PK batches, and rank r takes its ``shards`` consecutive ones. So N processes with
    ``shards=1`` and one process with ``shards=N`` see the same global batches. Items are
    ``(dataset index, epoch, draw)`` where draw numbers the item in the epoch's PK order: augmentation seeded
    by it is the same whichever process draws the item. A remainder smaller than a global batch is dropped.
    """

    def __init__(self, pk, world: World = World(), shards: int = 1):
        self.pk, self.world, self.shards = pk, world, shards
        self.group = world.size * shards

    def set_epoch(self, epoch: int) -> None:
        self.pk.set_epoch(epoch)

    def __len__(self) -> int:
        return self.pk.num_batches // self.group

    def __iter__(self):
        size, first = self.pk.batch_size, self.world.rank * self.shards
        batches = self.pk.batches()
        for step in range(len(self)):
            group = [next(batches) for _ in range(self.group)]
            yield [(index, self.pk.epoch, (step * self.group + first + s) * size + j)
                   for s, batch in enumerate(group[first:first + self.shards]) for j, index in enumerate(batch)]
