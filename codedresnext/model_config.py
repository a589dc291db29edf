"""Typed model configs and the preset registry (paper Table 1, docs/method.md section 2).

A config is plain data (JSON round-trip via `to_dict`/`from_dict`) and carries each coded stage's
codewords, so a checkpoint or an ONNX file rebuilds exactly the network it came from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .coding import CodingScheme, paper_scheme
from .coding_search import generate_scheme  # Algorithm 1 for a user's own K
from .errors import CodedResNeXtError

CIFAR10_CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
CIFAR100_CLASSES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm".split()
)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class StageConfig:
    """`depth` blocks of [out_channels, width d, active/branches]; the first has `stride`."""

    out_channels: int
    width: int  # d: bottleneck channels per branch
    branches: int  # N
    active: int  # N_act; == branches for a plain (uncoded) stage
    depth: int
    stride: int = 1
    codewords: tuple[str, ...] | None = None  # row k = class k; None for plain stages

    @property
    def coded(self) -> bool:
        return self.active < self.branches

    @property
    def scheme(self) -> CodingScheme | None:
        return CodingScheme(self.codewords) if self.codewords else None


@dataclass(frozen=True)
class ModelConfig:
    name: str
    num_classes: int
    class_names: tuple[str, ...]
    stages: tuple[StageConfig, ...]
    stem: str = "cifar"  # "cifar": conv3x3; "imagenet": conv7x7/2 + maxpool3/2
    stem_channels: int = 64
    input_size: int = 32
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    energy_eps: float = 1e-12  # inside the sqrt of the energy normalisation
    loss_power: float = 4.0  # coding loss exponent p
    loss_threshold: float = 0.0  # coding loss uses max(|.| - thr, 0)^p
    control: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise CodedResNeXtError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.stem not in ("cifar", "imagenet"):
            raise CodedResNeXtError(f"stem must be 'cifar' or 'imagenet', not {self.stem!r}")
        for i, s in enumerate(self.stages):
            if s.coded:
                sch = s.scheme
                if sch is None or sch.num_classes != self.num_classes or sch.n != s.branches:
                    raise CodedResNeXtError(
                        f"stage {i}: coded stage needs {self.num_classes} codewords of length {s.branches}"
                    )
                if sch.n_act != s.active:
                    raise CodedResNeXtError(f"stage {i}: codewords have {sch.n_act} ones, not {s.active}")

    @property
    def coded_blocks(self) -> list[int]:
        """Indices (over all blocks, in order) of the coded blocks."""
        out, i = [], 0
        for s in self.stages:
            for _ in range(s.depth):
                if s.coded:
                    out.append(i)
                i += 1
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["stages"] = tuple(
            StageConfig(**{**s, "codewords": tuple(s["codewords"]) if s.get("codewords") else None})
            for s in d["stages"]
        )
        for key in ("class_names", "mean", "std"):
            d[key] = tuple(d[key])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CodedResNeXtError(f"unknown model config keys {sorted(unknown)}")
        return cls(**d)


# --- presets ----------------------------------------------------------------------------------


def _stage(out_channels: int, width: int, branches: int, active: int, depth: int, stride: int) -> StageConfig:
    """A preset's stage: StageConfig without codewords (build_config picks them for the class count)."""
    return StageConfig(
        out_channels=out_channels, width=width, branches=branches, active=active, depth=depth, stride=stride
    )


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A named network and its training defaults; `build_config` resolves it for a class count."""

    name: str
    doc: str
    stages: tuple[StageConfig, ...]  # without codewords
    dataset: str  # which paper table the codewords come from (when K matches)
    class_names: tuple[str, ...]
    stem: str = "cifar"
    stem_channels: int = 64
    input_size: int = 32
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    # training defaults (docs/method.md section 4); TrainConfig can override both
    randaugment: tuple[int, int] | None = None  # (num_ops, magnitude); None: no RandAugment
    train_crop: str = "pad"  # "pad": pad-4 random crop (CIFAR); "resized": random-resized crop (ImageNet)

    def __post_init__(self) -> None:
        if self.train_crop not in ("pad", "resized"):
            raise CodedResNeXtError(f"preset {self.name}: train_crop must be 'pad' or 'resized'")
        if any(s.codewords is not None for s in self.stages):
            raise CodedResNeXtError(f"preset {self.name}: stages carry no codewords (build_config adds them)")


PRESETS: dict[str, Preset] = {}


def register(p: Preset) -> Preset:
    PRESETS[p.name] = p
    return p


register(
    Preset(
        name="cifar10",
        doc="Coded ResNeXt-29 (10x11d), paper Table 1; 4,638,926 parameters.",
        stages=(_stage(256, 11, 10, 10, 3, 1), _stage(512, 22, 10, 5, 3, 2), _stage(1024, 44, 10, 3, 3, 2)),
        dataset="cifar10",
        class_names=tuple(CIFAR10_CLASSES),
        randaugment=(3, 4),
    )
)
register(
    Preset(
        name="cifar100",
        doc="Coded ResNeXt-29 (20x6d), paper Table 1; 4,749,136 parameters.",
        stages=(_stage(256, 6, 20, 20, 3, 1), _stage(512, 12, 20, 8, 3, 2), _stage(1024, 24, 20, 4, 3, 2)),
        dataset="cifar100",
        class_names=CIFAR100_CLASSES,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        randaugment=(1, 2),
    )
)
register(
    Preset(
        name="imagenet",
        doc="Coded ResNeXt-50 (32x4d), paper Table 1; 160x160 input; 25,027,904 parameters.",
        stages=(
            _stage(256, 4, 32, 32, 3, 1),
            _stage(512, 8, 32, 32, 4, 2),
            _stage(1024, 16, 32, 16, 6, 2),
            _stage(2048, 32, 32, 8, 3, 2),
        ),
        dataset="imagenet",
        class_names=tuple(f"class_{i:03d}" for i in range(1000)),
        stem="imagenet",
        input_size=160,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        randaugment=(2, 10),
        train_crop="resized",
    )
)
register(
    Preset(
        name="tiny",
        doc="Small CIFAR-10 network with the cifar10 codes (5/10, 3/10); trains on a 2-core CPU; "
        "293,216 parameters. Crop + flip only by default (the demo recipe's few-epoch budget).",
        stages=(_stage(64, 4, 10, 10, 1, 1), _stage(128, 8, 10, 5, 2, 2), _stage(256, 16, 10, 3, 2, 2)),
        dataset="cifar10",
        class_names=tuple(CIFAR10_CLASSES),
        stem_channels=32,
    )
)
register(
    Preset(
        name="small",
        doc="The demo model's CPU network: tiny with three blocks per coded stage (six coded blocks, an "
        "early exit after each); 426,144 parameters, 1.1x tiny's training step. Crop + flip by default.",
        stages=(_stage(64, 4, 10, 10, 1, 1), _stage(128, 8, 10, 5, 3, 2), _stage(256, 16, 10, 3, 3, 2)),
        dataset="cifar10",
        class_names=tuple(CIFAR10_CLASSES),
        stem_channels=32,
    )
)


def _scheme_for(dataset: str, preset_classes: int, k: int, active: int, n: int) -> tuple[str, ...]:
    if k == preset_classes:
        try:
            return paper_scheme(dataset, f"{active}/{n}").codewords
        except CodedResNeXtError:
            pass
    return generate_scheme(k, n, active).codewords


def build_config(
    name: str,
    *,
    num_classes: int | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    control: bool = False,
    **overrides,
) -> ModelConfig:
    """Resolve a preset into a ModelConfig. `control=True` makes every block plain (r = 1)."""
    if name not in PRESETS:
        raise CodedResNeXtError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[name]
    if class_names is not None:
        class_names = tuple(class_names)
        if num_classes is not None and num_classes != len(class_names):
            raise CodedResNeXtError("num_classes disagrees with class_names")
        num_classes = len(class_names)
    elif num_classes is None or num_classes == len(p.class_names):
        num_classes, class_names = len(p.class_names), p.class_names
    else:
        class_names = tuple(f"class_{i}" for i in range(num_classes))
    stages = []
    for s in p.stages:
        coded = s.coded and not control
        words = (
            _scheme_for(p.dataset, len(p.class_names), num_classes, s.active, s.branches) if coded else None
        )
        stages.append(dataclasses.replace(s, active=s.active if coded else s.branches, codewords=words))
    kwargs = dict(
        name=name,
        num_classes=num_classes,
        class_names=class_names,
        stages=tuple(stages),
        stem=p.stem,
        stem_channels=p.stem_channels,
        input_size=p.input_size,
        mean=p.mean,
        std=p.std,
        control=control,
    )
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def list_presets() -> dict[str, str]:
    return {k: p.doc for k, p in PRESETS.items()}
