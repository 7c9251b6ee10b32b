"""The balance and histogram jobs' configuration: `BalanceConfig`, validated and frozen,
made from the flags by `job.flags.to_config`, and the specs the stages take from it
(`read_spec`, `image_vectors`, `holdout_rule`); the one map from transforms' parameter
names to flags (`as_flags`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from transforms import plan as planning
from transforms.images import DEFAULT_MAX_PIXELS, ImageVectors
from transforms.sources import ReadSpec
from transforms.stats import HoldoutRule

CLUSTER_ON = ("features", "thumbnail", "inception_v3")
OUTPUT_FORMATS = ("parquet", "tfrecord", "both")


FLAGS = {p: f"--{p}" for p in planning.PARAMETERS}  # transforms/plan.py's parameters are these flags


def as_flags(e: planning.SpecError) -> str:
    """A planning error in the command line's words."""
    return e.named(FLAGS)


@dataclass(frozen=True)
class BalanceConfig:
    input: str
    output: str
    input_format: str
    label_column: str = "label"
    id_column: str = "id"
    feature_column: str | None = "features"
    feature_columns: tuple[str, ...] = ()
    feature_dim: int | None = None
    reject_unreadable_files: bool = False
    strategy: str = "cluster"
    target: str | int | float | None = None
    target_counts: dict = field(default_factory=dict)
    clusters_per_class: int = 8
    kmeans_sample: int = 100_000
    holdout_fraction: float = 0.1
    test_fraction: float = 0.0
    seed: int = 0
    output_format: str = "both"
    num_shards: int | None = None
    shard_mb: int = 128
    batch_size: int = 8192
    image_column: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    cluster_on: str = "features"
    thumbnail_size: int = 16
    thumbnail_color: bool = False
    embedding_weights: str = "imagenet"
    embedding_image_size: int = 299
    keep_embeddings: bool = False
    image_batch_size: int = 128
    progress_seconds: float = 15.0
    processes: int = 0

    @property
    def reads_in_processes(self) -> bool:
        """Whether pass 1's units go to the job's processes (pipelines/parallel.py): not for
        TFRecord input, which TensorFlow parses (a forked child of a process whose
        TensorFlow runtime has started can hang in it)."""
        return self.input_format != "tfrecord"

    @property
    def payload(self) -> str:
        """What the records carry: encoded images, or feature vectors (the read contract decides)."""
        return self.read_spec.payload

    @property
    def formats(self) -> tuple[str, ...]:
        return ("parquet", "tfrecord") if self.output_format == "both" else (self.output_format,)

    @property
    def read_spec(self) -> ReadSpec:
        """What the readers need of the flags."""
        return ReadSpec(self.input, self.input_format, self.label_column, self.id_column, self.feature_column,
                        self.feature_columns, self.image_column, self.batch_size, self.image_batch_size,
                        self.reject_unreadable_files, self.progress_seconds)

    @property
    def image_vectors(self) -> ImageVectors:
        """What an image's clustering vector is (image corpora)."""
        return ImageVectors(self.cluster_on, self.max_pixels, self.thumbnail_size, self.thumbnail_color,
                            self.embedding_image_size, self.embedding_weights)

    @property
    def holdout_rule(self) -> HoldoutRule:
        return HoldoutRule(self.seed, self.holdout_fraction, self.test_fraction)

    @property
    def clusters(self) -> int:
        """k used: 1 for the random strategies and none, which resample a class as a whole."""
        return self.clusters_per_class if self.strategy == "cluster" else 1

    def to_json(self) -> dict:
        d = asdict(self)
        d["feature_columns"] = list(self.feature_columns)
        return d
