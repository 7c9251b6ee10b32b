"""The balance and histogram jobs' configuration: `BalanceConfig`, validated and frozen, made
from the flags by `job.flags.to_config`, composed of the specs the stages take: what to
read (`transforms.sources.ReadSpec`), what an image is clustered on
(`transforms.images.ImageVectors`), the hold-out (`transforms.stats.HoldoutRule`), the
resampling (`PlanSpec`) and what is written (`OutputSpec`). Each setting has one default,
in its spec's field, which the flag and its help take from there; the manifest records
the settings flat, by flag name (`to_json`), in `FLAG_ORDER`."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from transforms import plan as planning
from transforms.images import ImageVectors
from transforms.sources import ReadSpec
from transforms.stats import HoldoutRule

CLUSTER_ON = ("features", "thumbnail", "inception_v3")
OUTPUT_FORMATS = ("parquet", "tfrecord", "both")
FLAGS = {p: f"--{p}" for p in planning.PARAMETERS}  # transforms/plan.py's parameters are these flags


def as_flags(e: planning.SpecError) -> str:
    """A planning error in the command line's words."""
    return e.named(FLAGS)


@dataclass(frozen=True)
class PlanSpec:
    """How each class is resampled: what transforms.plan resolves against the histogram."""

    strategy: str = "cluster"
    target: str | int | float | None = None
    target_counts: dict = field(default_factory=dict)
    clusters_per_class: int = 8
    kmeans_sample: int = 100_000

    @property
    def clusters(self) -> int:
        """k used: 1 for the random strategies and none, which resample a class as a whole."""
        return self.clusters_per_class if self.strategy == "cluster" else 1


@dataclass(frozen=True)
class OutputSpec:
    """What the job writes, and where."""

    folder: str
    output_format: str = "both"
    num_shards: int | None = None
    shard_mb: int = 128
    keep_embeddings: bool = False

    @property
    def formats(self) -> tuple[str, ...]:
        return ("parquet", "tfrecord") if self.output_format == "both" else (self.output_format,)


@dataclass(frozen=True)
class BalanceConfig:
    read: ReadSpec
    images: ImageVectors
    holdout: HoldoutRule
    plan: PlanSpec
    output: OutputSpec
    feature_dim: int | None = None  # expected vector length (None: from the schema)
    processes: int = 0  # the job's forked processes (pipelines/parallel.py)

    @property
    def seed(self) -> int:
        """The seed of every random decision (the hold-out rule's too)."""
        return self.holdout.seed

    @property
    def payload(self) -> str:
        """What the records carry: encoded images, or feature vectors (the read contract decides)."""
        return self.read.payload

    @property
    def reads_in_processes(self) -> bool:
        """Whether pass 1's units go to the job's processes (pipelines/parallel.py): not for
        TFRecord input, which TensorFlow parses (a forked child of a process whose
        TensorFlow runtime has started can hang in it)."""
        return self.read.input_format != "tfrecord"

    @classmethod
    def of(cls, **settings) -> BalanceConfig:
        """A configuration from settings named as the flags are (unnamed ones: their defaults)."""
        unknown = set(settings) - set(WHERE)
        if unknown:
            raise TypeError(f"not settings of the job: {sorted(unknown)}")
        parts: dict[str, dict] = {part: {} for part in SPECS}
        top = {}
        for name, value in settings.items():
            part, attr = WHERE[name]
            (parts[part] if part else top)[attr] = value
        return cls(**{part: spec(**parts[part]) for part, spec in SPECS.items()}, **top)

    def to_json(self) -> dict:
        """The settings flat, by flag name, as the manifest and histogram.json record them."""
        out = {}
        for name in FLAG_ORDER:
            part, attr = WHERE[name]
            value = getattr(getattr(self, part) if part else self, attr)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


SPECS = {"read": ReadSpec, "images": ImageVectors, "holdout": HoldoutRule, "plan": PlanSpec, "output": OutputSpec}
RENAMED = {("holdout", "val_fraction"): "holdout_fraction", ("output", "folder"): "output"}  # spec field -> flag
WHERE = {RENAMED.get((part, f.name), f.name): (part, f.name) for part, spec in SPECS.items() for f in fields(spec)}
WHERE |= {f.name: ("", f.name) for f in fields(BalanceConfig) if f.name not in SPECS}
FLAG_ORDER = (  # the manifest's "options", in the order earlier manifests wrote them
    "input", "output", "input_format", "label_column", "id_column", "feature_column", "feature_columns",
    "feature_dim", "reject_unreadable_files", "strategy", "target", "target_counts", "clusters_per_class",
    "kmeans_sample", "holdout_fraction", "test_fraction", "seed", "output_format", "num_shards", "shard_mb",
    "batch_size", "image_column", "max_pixels", "cluster_on", "thumbnail_size", "thumbnail_color",
    "embedding_weights", "embedding_image_size", "keep_embeddings", "image_batch_size", "progress_seconds",
    "processes",
)


def default(name: str):
    """The default of the setting `name` (a flag's name), from its spec's field."""
    part, attr = WHERE[name]
    f = next(f for f in fields(SPECS[part] if part else BalanceConfig) if f.name == attr)
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None
