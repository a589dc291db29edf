"""Coded ResNeXt model (docs/method.md sections 1, 2, 5, 6): presets, exact block maths, masks, init.

CPU only and fast: the `tiny` preset with small random or real CIFAR-10 inputs. Where the point is
exactness, every BatchNorm gets non-trivial random statistics and affine parameters (the last BN
starts at gamma = 0, which would hide the coded branches) and the model runs in eval mode.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codedresnext.coding import paper_scheme
from codedresnext.errors import CodedResNeXtError
from codedresnext.model import (
    CodedResNeXt,
    coding_loss,
    count_parameters,
    create_model,
    early_decode,
    reference_branch_outputs,
    to_input,
)
from codedresnext.model_config import ModelConfig, StageConfig

# Paper Table 1 (docs/method.md section 2): (C_out, d, N_act, N, repeats, first stride) per stage.
LAYOUTS = {
    "cifar10": ((256, 11, 10, 10, 3, 1), (512, 22, 5, 10, 3, 2), (1024, 44, 3, 10, 3, 2)),
    "cifar100": ((256, 6, 20, 20, 3, 1), (512, 12, 8, 20, 3, 2), (1024, 24, 4, 20, 3, 2)),
    "imagenet": (
        (256, 4, 32, 32, 3, 1),
        (512, 8, 32, 32, 4, 2),
        (1024, 16, 16, 32, 6, 2),
        (2048, 32, 8, 32, 3, 2),
    ),
    "tiny": ((64, 4, 10, 10, 1, 1), (128, 8, 5, 10, 2, 2), (256, 16, 3, 10, 2, 2)),  # config.py
}
# preset -> (classes, stem, stem channels, paper dataset of its codewords)
PRESET_META = {
    "cifar10": (10, "cifar", 64, "cifar10"),
    "cifar100": (100, "cifar", 64, "cifar100"),
    "imagenet": (1000, "imagenet", 64, "imagenet"),
    "tiny": (10, "cifar", 32, "cifar10"),
}
ATOL = 1e-5
RTOL = 1e-4


def analytic_parameter_count(preset: str) -> int:
    """Count from the layout alone: stem, per block reduce/3x3/expand/BN/shortcut, fc (no bias)."""
    classes, stem, c, _ = PRESET_META[preset]
    total = 3 * c * (49 if stem == "imagenet" else 9) + 2 * c
    for c_out, d, _, n, depth, stride in LAYOUTS[preset]:
        for i in range(depth):
            nd = n * d
            total += c * nd + 2 * nd  # 1x1 reduce + BN
            total += nd * d * 9 + 2 * nd  # grouped 3x3 + BN
            total += nd * c_out + 2 * c_out  # expand (sum of per-branch 1x1) + BN
            if c != c_out or (stride != 1 and i == 0):
                total += c * c_out + 2 * c_out  # 1x1 projection shortcut + BN
            c = c_out
    return total + c * classes


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(c, generator=g))
    return model


def tiny_model(seed: int = 0, **overrides) -> CodedResNeXt:
    torch.manual_seed(seed)
    return randomise_bn(create_model("tiny", **overrides), seed).eval()


def random_input(b: int = 4, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def block_inputs(model: CodedResNeXt, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every block, in order."""
    h, out = model.stem(x), []
    for b in model.blocks:
        out.append(h)
        h, _ = b(h)
    return out


def literal_block(block, x, keep=None, drop=None, divide_by=None):
    """The paper's block (docs/method.md section 1) from materialised branch outputs t_n (B, N, C, H, W)."""
    t = reference_branch_outputs(block, x)
    B, N = t.shape[:2]
    if keep is not None:  # a removed branch contributes t_n = 0
        t = t * keep.view(1, N, 1, 1, 1)
    e = t.pow(2).mean((2, 3, 4))  # (B, N) energies
    norm2 = e.sum(1) / (N if divide_by is None else divide_by) + block.energy_eps  # (B,)
    t = t / norm2.sqrt().view(B, 1, 1, 1, 1)
    if drop is not None:
        t = t * drop.view(B, N, 1, 1, 1)
    y = block.bn(t.sum(1))  # sum over branches, then BN
    return F.relu(y + block.shortcut(x)), e / norm2[:, None]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin contention on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def real_batch(real_images) -> torch.Tensor:
    """16 real CIFAR-10 test images preprocessed as the trainer does."""
    from codedresnext.model_config import CIFAR10_MEAN, CIFAR10_STD

    return to_input(torch.from_numpy(real_images.images[:16]), CIFAR10_MEAN, CIFAR10_STD)


@pytest.fixture(params=["random", "real"])
def inputs(request) -> torch.Tensor:
    if request.param == "random":
        return random_input(4, 16)
    return request.getfixturevalue("real_batch")


# --- presets -----------------------------------------------------------------------------------


def test_cifar10_parameter_count_and_control():
    torch.manual_seed(0)
    assert count_parameters(create_model("cifar10")) == 4_638_926
    assert count_parameters(create_model("cifar10", control=True)) == 4_638_926
    assert analytic_parameter_count("cifar10") == 4_638_926  # the formula below is right


@pytest.mark.parametrize("preset", ["cifar100", "tiny"])
def test_preset_parameter_count_matches_layout(preset):
    m = create_model(preset)
    assert count_parameters(m) == analytic_parameter_count(preset)
    assert count_parameters(create_model(preset, control=True)) == count_parameters(m)


@pytest.fixture(scope="module")
def imagenet_model() -> CodedResNeXt:
    return create_model("imagenet")


def test_imagenet_parameter_count(imagenet_model):
    n = count_parameters(imagenet_model)
    assert n == analytic_parameter_count("imagenet")
    assert abs(n - 25.0e6) < 0.05e6  # paper: 25.0M


def check_layout(model: CodedResNeXt, preset: str) -> None:
    classes, stem, c0, dataset = PRESET_META[preset]
    cfg = model.cfg
    assert (cfg.num_classes, cfg.stem, cfg.stem_channels) == (classes, stem, c0)
    got = tuple((s.out_channels, s.width, s.active, s.branches, s.depth, s.stride) for s in cfg.stages)
    assert got == LAYOUTS[preset]
    blocks = iter(model.blocks)
    c_in = c0
    for c_out, d, n_act, n, depth, stride in LAYOUTS[preset]:
        for i in range(depth):
            b = next(blocks)
            assert (b.branches, b.width, b.c_out) == (n, d, c_out)
            assert b.conv[0].stride == ((stride, stride) if i == 0 else (1, 1))
            assert b.conv[0].groups == n and b.expand.weight.shape == (c_out, n * d, 1, 1)
            assert isinstance(b.shortcut, nn.Identity) == (c_in == c_out and (i > 0 or stride == 1))
            assert b.coded == (n_act < n)
            if b.coded:
                words = torch.tensor(paper_scheme(dataset, f"{n_act}/{n}").matrix)
                assert torch.equal(b.codewords, words)
                assert b.ratio == n_act / n
            c_in = c_out
    assert next(blocks, None) is None
    assert model.fc.weight.shape == (classes, c_in) and model.fc.bias is None
    stem_conv = model.stem[0]
    if stem == "imagenet":
        assert (stem_conv.kernel_size, stem_conv.stride) == ((7, 7), (2, 2))
        assert isinstance(model.stem[-1], nn.MaxPool2d)
        assert (model.stem[-1].kernel_size, model.stem[-1].stride) == (3, 2)
    else:
        assert (stem_conv.kernel_size, stem_conv.stride) == ((3, 3), (1, 1))
        assert not any(isinstance(m, nn.MaxPool2d) for m in model.stem)


@pytest.mark.parametrize("preset", ["cifar10", "cifar100", "tiny"])
def test_preset_layout(preset):
    check_layout(create_model(preset), preset)


def test_imagenet_layout(imagenet_model):
    check_layout(imagenet_model, "imagenet")


def test_control_variant_is_plain():
    m = create_model("tiny", control=True).eval()
    assert m.coded_blocks == [] and all(s.codewords is None for s in m.cfg.stages)
    out = m(random_input(2, 16), targets=torch.tensor([0, 1]))
    assert out.energies == () and out.coding_loss == ()
    assert out.logits.shape == (2, 10)


def test_unknown_preset_names_valid_ones():
    with pytest.raises(CodedResNeXtError, match="unknown preset 'resnet50'") as e:
        create_model("resnet50")
    for name in ("cifar10", "cifar100", "imagenet", "tiny"):
        assert repr(name) in str(e.value)


# --- exact block maths -------------------------------------------------------------------------


def test_energies_sum_to_n_per_sample():
    m = tiny_model()
    x = random_input(6, 16)
    for mode in ("eval", "train", "masked"):
        m.train(mode == "train")
        out = m(x, keep_classes=[3] if mode == "masked" else None)
        assert len(out.energies) == len(m.coded_blocks) == 4
        for e, i in zip(out.energies, m.coded_blocks):
            assert e.shape == (6, m.blocks[i].branches)
            assert torch.allclose(e.sum(1), torch.full((6,), 10.0), atol=1e-4), mode
            assert (e >= 0).all()


def test_gram_energies_and_block_output_equal_literal_paper_block(inputs):
    m = tiny_model()
    xs = block_inputs(m, inputs)
    for i in m.coded_blocks:
        b = m.blocks[i]
        y, e = b(xs[i])
        t = reference_branch_outputs(b, xs[i])  # (B, N, C_out, H', W')
        assert t.shape == (inputs.shape[0], b.branches, b.c_out, *y.shape[2:])
        raw = t.pow(2).mean((2, 3, 4))  # E(t_n) = mean over C_out, H', W' of t_n^2
        h = F.relu(b.conv(F.relu(b.reduce(xs[i]))))
        torch.testing.assert_close(b.branch_energy(h), raw, rtol=RTOL, atol=1e-6)
        y_ref, e_ref = literal_block(b, xs[i])
        torch.testing.assert_close(e, e_ref, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
        assert y.abs().max() > 0.1  # the coded path is live (gamma != 0)


def test_real_images_energies_are_not_uniform(real_batch):
    """On real images the normalised energies vary across branches (the check above is not vacuous)."""
    out = tiny_model()(real_batch)
    assert all(float(e.std(1).min()) > 1e-3 for e in out.energies)


# --- coding loss -------------------------------------------------------------------------------

# Two samples, N = 4, N_act = 2 (r = 0.5); energies already sum to N.
E = torch.tensor([[1.5, 0.5, 2.0, 0.0], [0.0, 2.0, 1.0, 1.0]])
W = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
# r*E - W = [[-0.25, 0.25, 0, 0], [0, 0, -0.5, 0.5]]
#   ^4: [[0.00390625, 0.00390625, 0, 0], [0, 0, 0.0625, 0.0625]] -> sum 0.1328125 -> mean / 8
#   thr 0.2, ^4: [[0.05^4, 0.05^4, 0, 0], [0, 0, 0.3^4, 0.3^4]] -> sum 0.0162125 -> mean / 8
#   ^2: [[0.0625, 0.0625, 0, 0], [0, 0, 0.25, 0.25]] -> sum 0.625 -> mean / 8


@pytest.mark.parametrize(
    "power,thr,expected",
    [(4.0, 0.0, 0.1328125 / 8), (4.0, 0.2, 0.0162125 / 8), (2.0, 0.0, 0.625 / 8)],
)
def test_coding_loss_hand_computed(power, thr, expected):
    got = coding_loss(E, W, 0.5, power, thr)
    assert got.shape == ()
    assert math.isclose(float(got), expected, rel_tol=1e-6)


def test_model_coding_loss_uses_true_class_codeword():
    m = tiny_model()
    y = torch.tensor([0, 3, 9, 3])
    out = m(random_input(4, 16), targets=y)
    assert len(out.coding_loss) == len(out.energies) == 4
    for e, loss, i in zip(out.energies, out.coding_loss, m.coded_blocks):
        words = torch.tensor(m.cfg.stages[m.block_stage[i]].scheme.matrix)[y]  # (B, N)
        r = words[0].sum() / words.shape[1]
        torch.testing.assert_close(loss, ((r * e - words) ** 4).mean(), rtol=1e-5, atol=1e-8)


# --- dropSubNN ---------------------------------------------------------------------------------


def record_drops(model: CodedResNeXt) -> tuple[list, list]:
    """Hook every block; returns (recorded drop masks, hook handles)."""
    seen: list = []

    def hook(mod, args):
        seen.append(args[2] if len(args) > 2 else None)

    return seen, [b.register_forward_pre_hook(hook) for b in model.blocks]


def test_drop_masks_reused_within_scheme_and_redrawn_on_change():
    m = tiny_model()  # blocks: 0 plain, 1-2 scheme 5/10, 3-4 scheme 3/10
    m.train()
    m.p_drop = 0.5
    seen, _ = record_drops(m)
    m(random_input(32, 8))
    assert seen[0] is None
    assert torch.equal(seen[1], seen[2]) and torch.equal(seen[3], seen[4])
    assert not torch.equal(seen[2], seen[3])  # P(equal by chance) = 2^-320
    assert seen[1].shape == (32, 10)


def test_drop_mask_reused_across_stages_with_the_same_scheme():
    w5 = paper_scheme("cifar10", "5/10").codewords
    w3 = paper_scheme("cifar10", "3/10").codewords
    stages = (
        StageConfig(16, 2, 10, 5, 1, 1, w5),
        StageConfig(32, 2, 10, 5, 1, 2, w5),  # same scheme as the previous stage
        StageConfig(32, 2, 10, 3, 1, 1, w3),
    )
    cfg = ModelConfig("custom", 10, tuple("abcdefghij"), stages, stem_channels=16)
    m = CodedResNeXt(cfg).train()
    m.p_drop = 0.5
    seen, _ = record_drops(m)
    m(random_input(32, 8))
    assert torch.equal(seen[0], seen[1])
    assert not torch.equal(seen[1], seen[2])


def test_drop_scaling_and_probability():
    p = 0.2
    m = tiny_model()
    m.train()
    m.p_drop = p
    seen, _ = record_drops(m)
    torch.manual_seed(5)
    m(random_input(1024, 8))
    masks = torch.cat([seen[1], seen[3]])  # two independent draws, (2048, 10)
    values = torch.unique(masks).tolist()
    assert len(values) == 2 and values[0] == 0.0
    assert values[1] == pytest.approx(1 / (1 - p), rel=1e-6)
    zero_frac = float((masks == 0).float().mean())
    assert abs(zero_frac - p) < 0.015  # 20480 draws: 5 standard deviations
    assert float(masks.mean()) == pytest.approx(1.0, abs=0.02)  # unbiased in expectation


def test_drop_is_applied_after_normalisation():
    """Energies (and the loss) come from the undropped branches; dropped ones add nothing."""
    m = tiny_model()
    xs = block_inputs(m, random_input(4, 16))
    b = m.blocks[3]
    drop = (torch.rand(4, 10, generator=torch.Generator().manual_seed(0)) > 0.3).float() / 0.7
    y, e = b(xs[3], None, drop)
    y_ref, e_ref = literal_block(b, xs[3], drop=drop)
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(e, b(xs[3])[1])
    torch.testing.assert_close(e, e_ref, rtol=RTOL, atol=ATOL)


def test_no_drop_in_eval():
    m = tiny_model()
    x = random_input(4, 16)
    ref = m(x).logits
    m.p_drop = 0.5
    seen, _ = record_drops(m)
    torch.testing.assert_close(m(x).logits, ref, rtol=0, atol=0)
    assert seen == [None] * len(m.blocks)


# --- masked forward (the per-class reference the exporter is checked against) ------------------


def zero_branches(model: CodedResNeXt, keep: list[torch.Tensor | None], how: str) -> CodedResNeXt:
    """A copy whose removed branches give t_n = 0 exactly.

    how='bn': gamma = beta = 0 in the BN after the grouped 3x3 for branch n's d channels, so
    h_n = relu(0) = 0 whatever the input; how='expand': zero W_n, branch n's d input columns of
    the expand conv, so t_n = W_n h_n = 0.
    """
    z = copy.deepcopy(model)
    with torch.no_grad():
        for b, k in zip(z.blocks, keep):
            if k is None:
                continue
            for n in torch.nonzero(k == 0).flatten().tolist():
                sl = slice(n * b.width, (n + 1) * b.width)
                if how == "bn":
                    b.conv[1].weight[sl] = 0
                    b.conv[1].bias[sl] = 0
                else:
                    b.expand.weight[:, sl] = 0
    return z


@pytest.mark.parametrize("how", ["bn", "expand"])
@pytest.mark.parametrize("classes", [[3], [0, 7], [1, 2, 5]])
def test_masked_forward_equals_zeroed_branch_weights(how, classes, inputs):
    m = tiny_model()
    keep = m.keep_masks(classes)
    z = zero_branches(m, keep, how)
    masked, ref = m(inputs, keep_classes=classes), z(inputs)
    torch.testing.assert_close(masked.logits, ref.logits, rtol=RTOL, atol=ATOL)
    for a, b in zip(masked.energies, ref.energies):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)
    full = m(inputs).logits
    assert (masked.logits - full).abs().max() > 1e-2  # the removal changes the network


def test_per_sample_paths_equal_each_class_masked_model(inputs):
    """`paths` (path training) runs sample i through class paths[i]'s path: row i == keep_classes."""
    m = tiny_model()
    paths = (torch.arange(len(inputs)) * 7 + 3) % 10
    out = m(inputs, paths=paths)
    for i, k in enumerate(paths.tolist()):
        ref = m(inputs, keep_classes=[k])
        torch.testing.assert_close(out.logits[i], ref.logits[i], rtol=RTOL, atol=ATOL)
        for a, b in zip(out.energies, ref.energies):
            torch.testing.assert_close(a[i], b[i], rtol=RTOL, atol=ATOL)
    with pytest.raises(CodedResNeXtError, match="classes 0..9"):
        m(inputs, paths=torch.full((len(inputs),), 10))
    with pytest.raises(CodedResNeXtError, match="on its own"):
        m(inputs, targets=paths, paths=paths)


def test_keep_masks_are_union_of_paths():
    m = tiny_model()
    for classes in ([4], [0, 9], [1, 2, 3, 6]):
        for b, k, si in zip(m.blocks, m.keep_masks(classes), m.block_stage):
            scheme = m.cfg.stages[si].scheme
            if scheme is None:
                assert k is None
                continue
            expected = torch.zeros(b.branches)
            expected[scheme.kept_branches(classes)] = 1
            assert torch.equal(k, expected)
    all_kept = m.keep_masks(range(10))
    assert all(k is None or bool((k == 1).all()) for k in all_kept)
    with pytest.raises(CodedResNeXtError, match="out of range"):
        m.keep_masks([10])


def test_masked_normalisation_divides_by_full_n():
    """docs/method.md section 5: removed branches count in the denominator; dividing by the kept
    count differs."""
    m = tiny_model()
    xs = block_inputs(m, random_input(4, 16))
    keep_all = m.keep_masks([2])
    for i in m.coded_blocks:
        b, keep = m.blocks[i], keep_all[i]
        y, e = b(xs[i], keep)
        y_full, e_full = literal_block(b, xs[i], keep=keep)
        y_kept, _ = literal_block(b, xs[i], keep=keep, divide_by=int(keep.sum()))
        torch.testing.assert_close(y, y_full, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(e, e_full, rtol=RTOL, atol=ATOL)
        assert (y - y_kept).abs().max() > 0.05
        assert torch.all(e[:, keep == 0] == 0)


# --- initialisation ----------------------------------------------------------------------------


def test_initialisation():
    torch.manual_seed(0)
    m = create_model("tiny")
    coded_expands = {id(b.expand): b for b in m.blocks if b.coded}
    for b in m.blocks:
        assert torch.all(b.bn.weight == 0)  # last BN of every block starts at gamma = 0
        assert torch.all(b.bn.bias == 0)
    for name, mod in m.named_modules():
        if isinstance(mod, nn.BatchNorm2d) and not name.endswith(".bn"):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0), name
        if isinstance(mod, nn.Conv2d):
            w = mod.weight
            if id(mod) in coded_expands:  # the paper's grouped expand N*d -> N*C_out
                b = coded_expands[id(mod)]
                fan_out = b.branches * b.c_out
            else:  # kaiming fan_out: out_channels * kernel area
                fan_out = w.shape[0] * w.shape[2] * w.shape[3]
            expected = math.sqrt(2.0 / fan_out)
            assert abs(float(w.std()) / expected - 1) < 0.15, (name, float(w.std()), expected)
            assert abs(float(w.mean())) < 0.15 * expected, name


# --- early decoding ----------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["5/10", "3/10"])
def test_early_decode_codeword_energies(label):
    s = paper_scheme("cifar10", label)
    words = torch.tensor(s.matrix)  # (K, N)
    energies = words * (s.n / s.n_act)  # normalised energies (sum N) shaped like each codeword
    dist = early_decode(energies, words)  # (K, K)
    assert torch.equal(dist.argmin(1), torch.arange(s.num_classes))
    hamming = torch.tensor([[sum(a != b for a, b in zip(u, v)) for v in s.codewords] for u in s.codewords])
    torch.testing.assert_close(dist, hamming.float().sqrt(), rtol=1e-5, atol=1e-5)
    # noise of norm 0.5 (< sqrt(H_min) / 2 = 1 after rescaling) still decodes to the same class
    noise = torch.randn(s.num_classes, s.n, generator=torch.Generator().manual_seed(0))
    noise = 0.5 * noise / noise.norm(dim=1, keepdim=True) * (s.n / s.n_act)
    assert torch.equal(early_decode(energies + noise, words).argmin(1), torch.arange(s.num_classes))


# --- config round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, {"num_classes": 7}, {"control": True}])
def test_config_json_round_trip_rebuilds_identical_model(overrides):
    torch.manual_seed(0)
    m = create_model("tiny", **overrides).eval()
    d = json.loads(json.dumps(m.cfg.to_dict()))
    cfg = ModelConfig.from_dict(d)
    assert cfg == m.cfg
    torch.manual_seed(0)
    m2 = CodedResNeXt(cfg).eval()
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert list(sd) == list(sd2)
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    for b, b2 in zip(m.blocks, m2.blocks):
        assert b.coded == b2.coded and (not b.coded or torch.equal(b.codewords, b2.codewords))
    x = random_input(2, 16)
    torch.testing.assert_close(m(x).logits, m2(x).logits, rtol=0, atol=0)


def test_config_from_dict_rejects_unknown_keys():
    d = create_model("tiny").cfg.to_dict()
    d["bogus"] = 1
    with pytest.raises(CodedResNeXtError, match="unknown model config keys"):
        ModelConfig.from_dict(d)


def test_generated_scheme_for_user_classes():
    """An ImageFolder with 7 classes on the tiny preset gets generated codes (N=10, N_act 5 and 3)."""
    m = create_model("tiny", num_classes=7)
    for s in m.cfg.stages:
        if s.coded:
            sch = s.scheme
            assert (sch.num_classes, sch.n, sch.n_act) == (7, 10, s.active)
            assert len(set(sch.codewords)) == 7 and sch.min_distance() >= 4
            sums = sch.column_sums()
            assert int(sums.max() - sums.min()) <= 1
    assert m.fc.weight.shape[0] == 7
