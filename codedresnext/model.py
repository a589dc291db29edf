"""Coded ResNeXt (docs/method.md sections 1-2), readable in one sitting.

Implementation note (why the expand is one dense conv): the paper's block gives every branch its
own 1x1 expand d -> C_out and then sums the N outputs. A sum of per-branch linear maps is one dense
1x1 conv N*d -> C_out with the same weights, so we never materialise the (B, N, C_out, H, W) tensor.
Branch energies are still exact: E_n = mean_{c,p} (W_n h_n)^2 = sum_p h_n^T (W_n^T W_n) h_n / (C_out P),
a d x d Gram matrix per branch (a grouped 1x1 conv), N*d*d instead of N*d*C_out multiply-adds.
Zeroing branch n (dropSubNN or removal) zeroes h_n, which zeroes t_n = W_n h_n exactly.
`reference_branch_outputs` computes t_n the literal way; tests check both agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import CodedResNeXtError
from .model_config import ModelConfig, StageConfig, build_config


class ModelOutput(NamedTuple):
    logits: Tensor  # (B, K)
    energies: tuple[Tensor, ...]  # per coded block: (B, N) normalised energies, sum to N
    coding_loss: tuple[Tensor, ...]  # per coded block: scalar; empty when no targets given


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


class CodedBlock(nn.Module):
    """One ResNeXt bottleneck with N branches; coded when `codewords` is given (r < 1)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        width: int,
        branches: int,
        stride: int,
        codewords: Tensor | None,
        energy_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        nd = branches * width
        self.branches, self.width, self.c_out = branches, width, c_out
        self.energy_eps = energy_eps
        self.reduce = conv_bn(c_in, nd, 1)  # all branches' 1x1 reduce, side by side
        self.conv = conv_bn(nd, nd, 3, stride, groups=branches)  # per-branch 3x3
        self.expand = nn.Conv2d(nd, c_out, 1, bias=False)  # sum of per-branch expands
        self.bn = nn.BatchNorm2d(c_out)  # after the sum; gamma starts at 0
        if stride != 1 or c_in != c_out:
            self.shortcut: nn.Module = conv_bn(c_in, c_out, 1, stride)
        else:
            self.shortcut = nn.Identity()
        self.coded = codewords is not None
        if codewords is not None:
            self.register_buffer("codewords", codewords.float(), persistent=False)  # (K, N)
            self.ratio = float(codewords[0].sum()) / branches

    def gram(self) -> Tensor:
        """(N*d, d, 1, 1) grouped-conv weight G_n = W_n^T W_n of each branch's expand."""
        w = self.expand.weight.float().view(self.c_out, self.branches, self.width)
        g = torch.einsum("ond,one->nde", w, w)  # (N, d, d)
        return g.reshape(self.branches * self.width, self.width, 1, 1)

    def branch_energy(self, h: Tensor) -> Tensor:
        """(B, N*d, H, W) expand input -> (B, N) raw energies mean_{c,p} t_n^2, in float32."""
        with torch.autocast(h.device.type, enabled=False):
            hf = h.float()
            gh = F.conv2d(hf, self.gram(), groups=self.branches)
            e = (hf * gh).sum((2, 3)).view(h.shape[0], self.branches, self.width).sum(-1)
        return e.clamp_min(0) / (self.c_out * h.shape[2] * h.shape[3])

    def forward(
        self,
        x: Tensor,
        keep: Tensor | None = None,
        drop: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, C_in, H, W) -> (y (B, C_out, H', W'), normalised energies (B, N) or None).

        keep: (N,) or per sample (B, N) 0/1; branches outside it are removed (zeroed before
        normalisation).
        drop: (B, N) dropSubNN multipliers (0 or 1/(1-p)), applied after normalisation.
        """
        B = x.shape[0]
        h = F.relu(self.reduce(x))  # (B, N*d, H, W)
        h = F.relu(self.conv(h))  # (B, N*d, H', W')
        if not self.coded:
            return F.relu(self.bn(self.expand(h)) + self.shortcut(x)), None
        if keep is not None:
            k = keep.to(h.dtype).repeat_interleave(self.width, dim=-1)  # (N*d,) or (B, N*d)
            h = h * k.view(-1 if k.dim() == 2 else 1, h.shape[1], 1, 1)
        e = self.branch_energy(h)  # (B, N)
        norm2 = e.sum(1) / self.branches + self.energy_eps  # (B,) full N even when pruned
        energies = e / norm2[:, None]  # (B, N), sums to N
        if drop is not None:
            h = h * drop.to(h.dtype).repeat_interleave(self.width, dim=1).view(B, -1, 1, 1)
        y = self.expand(h) / norm2.sqrt().to(h.dtype).view(B, 1, 1, 1)  # (B, C_out, H', W')
        return F.relu(self.bn(y) + self.shortcut(x)), energies


class CodedResNeXt(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.stem_channels
        if cfg.stem == "cifar":
            self.stem = nn.Sequential(*conv_bn(3, c, 3), nn.ReLU(inplace=True))
        else:
            stem = conv_bn(3, c, 7, 2)
            self.stem = nn.Sequential(*stem, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        blocks, self.block_stage = [], []
        for si, s in enumerate(cfg.stages):
            words = _codeword_tensor(s)
            for i in range(s.depth):
                stride = s.stride if i == 0 else 1
                blocks.append(
                    CodedBlock(c, s.out_channels, s.width, s.branches, stride, words, cfg.energy_eps)
                )
                self.block_stage.append(si)
                c = s.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(c, cfg.num_classes, bias=False)
        self.p_drop = 0.0  # dropSubNN probability, set by the trainer
        self.exit_heads = None  # exit_heads.ExitHeads fitted after training (not a module: never trained)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for b in self.blocks:
            nn.init.zeros_(b.bn.weight)
            if b.coded:  # as the paper's grouped expand (fan_out = N * C_out)
                std = (2.0 / (b.branches * b.c_out)) ** 0.5
                nn.init.normal_(b.expand.weight, 0.0, std)

    @property
    def coded_blocks(self) -> list[int]:
        return [i for i, b in enumerate(self.blocks) if b.coded]

    def keep_masks(self, classes: Sequence[int]) -> list[Tensor | None]:
        """Per block: (N,) 0/1 mask of branches used by any of `classes` (None for plain blocks)."""
        classes = list(classes)
        for k in classes:
            if not 0 <= k < self.cfg.num_classes:
                raise CodedResNeXtError(f"class {k} out of range 0..{self.cfg.num_classes - 1}")
        return [b.codewords[classes].amax(0) if b.coded else None for b in self.blocks]

    def path_masks(self, paths: Tensor) -> list[Tensor | None]:
        """Per block: (B, N) 0/1 mask of each sample's own class path (None for plain blocks)."""
        if len(paths) and not 0 <= int(paths.min()) <= int(paths.max()) < self.cfg.num_classes:
            raise CodedResNeXtError(f"paths must be classes 0..{self.cfg.num_classes - 1}")
        return [b.codewords[paths.to(b.codewords.device)] if b.coded else None for b in self.blocks]

    def _drop_masks(self, B: int, device: torch.device) -> list[Tensor | None]:
        """dropSubNN: one (B, N) mask per run of consecutive blocks with the same scheme."""
        masks: list[Tensor | None] = []
        prev_key, mask = None, None
        for b, stage in zip(self.blocks, self.block_stage):
            if not b.coded:
                masks.append(None)
                prev_key = None
                continue
            key = self.cfg.stages[stage].codewords
            if key != prev_key:
                keep = torch.rand(B, b.branches, device=device) >= self.p_drop
                mask = keep.float() / (1.0 - self.p_drop)
                prev_key = key
            masks.append(mask)
        return masks

    def forward(
        self,
        x: Tensor,
        targets: Tensor | None = None,
        keep_classes: Sequence[int] | None = None,
        branch_keep: Sequence[Tensor | None] | None = None,
        paths: Tensor | None = None,
    ) -> ModelOutput:
        """x (B, 3, H, W) normalised images.

        keep_classes: the masked reference, branches outside these classes' paths zeroed.
        branch_keep: per block an (N,) 0/1 mask or None; overrides keep_classes (removal studies).
        paths: (B,) classes; sample i runs through class paths[i]'s path alone, as that class's
            pruned graph would (path training).
        """
        if paths is not None:
            if targets is not None or branch_keep is not None or keep_classes is not None:
                raise CodedResNeXtError("paths runs each sample's class path alone: pass it on its own")
            branch_keep = self.path_masks(paths)
        if branch_keep is not None:
            if len(branch_keep) != len(self.blocks):
                raise CodedResNeXtError(f"branch_keep needs {len(self.blocks)} entries, one per block")
            keeps = list(branch_keep)
        elif keep_classes is not None:
            keeps = self.keep_masks(keep_classes)
        else:
            keeps = [None] * len(self.blocks)
        use_drop = self.training and self.p_drop > 0
        drops = self._drop_masks(x.shape[0], x.device) if use_drop else [None] * len(self.blocks)
        h = self.stem(x)  # (B, C0, H, W)
        energies, losses = [], []
        for b, keep, drop in zip(self.blocks, keeps, drops):
            h, e = b(h, keep, drop)  # (B, C_out, H', W'), (B, N) | None
            if e is not None:
                energies.append(e)
                if targets is not None:
                    losses.append(
                        coding_loss(
                            e, b.codewords[targets], b.ratio, self.cfg.loss_power, self.cfg.loss_threshold
                        )
                    )
        feats = h.mean((2, 3))  # (B, C_last)
        return ModelOutput(self.fc(feats), tuple(energies), tuple(losses))


def coding_loss(
    energies: Tensor, words: Tensor, ratio: float, power: float = 4.0, threshold: float = 0.0
) -> Tensor:
    """mean over batch and branches of max(|r * E_n - w_n| - thr, 0)^p (docs/method.md section 1.3)."""
    diff = (ratio * energies - words).abs()
    if threshold > 0:
        diff = (diff - threshold).clamp_min(0)
    return diff.pow(power).mean()


def early_decode(energies: Tensor, codewords: Tensor) -> Tensor:
    """(B, N) normalised energies -> (B, K) distances ||v - w_k||, v rescaled to sum to N_act."""
    n_act = codewords[0].sum()
    v = energies * (n_act / energies.shape[1])
    return torch.cdist(v.float(), codewords.float().to(v.device))


def _codeword_tensor(s: StageConfig) -> Tensor | None:
    if not s.coded:
        return None
    return torch.tensor([[c == "1" for c in w] for w in s.codewords], dtype=torch.float32)


def reference_branch_outputs(block: CodedBlock, x: Tensor) -> Tensor:
    """The literal paper computation: (B, N, C_out, H', W') per-branch expand outputs t_n."""
    h = F.relu(block.conv(F.relu(block.reduce(x))))
    B, _, H, W = h.shape
    w = block.expand.weight.view(block.c_out, block.branches, block.width)
    hb = h.view(B, block.branches, block.width, H, W)
    return torch.einsum("ond,bndhw->bnohw", w, hb)


def to_input(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 normalised (the model's input convention)."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    control: bool = False,
    **overrides,
) -> CodedResNeXt:
    """Build a preset ('cifar10', 'cifar100', 'imagenet', 'tiny'); control=True for plain ResNeXt."""
    cfg = build_config(name, num_classes=num_classes, class_names=class_names, control=control, **overrides)
    return CodedResNeXt(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
