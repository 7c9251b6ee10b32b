"""training.fit and training.evaluate on small balanced outputs (vectors and tiny images)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_job, write_parquet_corpus
from hypothesis import given
from hypothesis import strategies as st

from training import sampling

keras = pytest.importorskip("keras")


# ---------------------------------------------------------------- F1 -> shares

@given(st.lists(st.floats(0, 1), min_size=2, max_size=12), st.floats(0, 1), st.floats(0, 1))
def test_shares_properties(f1, mix, floor_frac):
    c = len(f1)
    floor = floor_frac / c
    s = sampling.next_shares(np.array(f1), c, floor, mix)
    assert abs(s.sum() - 1) < 1e-9
    assert (s >= floor - 1e-12).all()
    counts = sampling.epoch_counts(s, 1000)
    assert counts.sum() == 1000


def test_uniform_at_start_and_when_all_equal():
    assert np.allclose(sampling.next_shares(None, 4), 0.25)
    assert np.allclose(sampling.next_shares(np.full(4, 0.7), 4, 0.02, 1.0), 0.25)


def test_worst_class_gains_and_mix_blends():
    f1 = np.array([0.9, 0.5, 0.1])
    pure = sampling.next_shares(f1, 3, 0.0, 1.0)
    assert np.allclose(pure, [0.1 / 1.5, 0.5 / 1.5, 0.9 / 1.5])
    half = sampling.next_shares(f1, 3, 0.0, 0.5)
    assert np.allclose(half, 0.5 / 3 + 0.5 * pure)
    assert half.argmax() == 2 and half[2] > 1 / 3


def test_floor_is_held():
    s = sampling.next_shares(np.array([1.0, 1.0, 0.0]), 3, 0.1, 1.0)
    assert np.allclose(s, [0.1, 0.1, 0.8])


def test_class_without_val_records_counts_as_average():
    s = sampling.DynamicSampler(3, "dynamic", 0.0, 1.0)
    got = s.update(np.array([0.2, np.nan, 0.6]))
    assert np.allclose(got, sampling.next_shares(np.array([0.2, 0.4, 0.6]), 3, 0.0, 1.0))


@given(st.lists(st.floats(0.01, 1), min_size=2, max_size=8))
def test_sample_weights_balance_the_loss(raw):
    s = np.array(raw) / sum(raw)
    w = sampling.sample_weights(s, None, correct=True)
    assert abs((s * w).sum() - 1) < 1e-9
    assert np.allclose(s * w, 1 / len(s))  # every class carries the same loss mass
    assert np.allclose(sampling.sample_weights(s, None, correct=False), 1.0)
    cw = np.arange(1, len(s) + 1, dtype=float)
    assert np.allclose(sampling.sample_weights(s, cw) / cw, sampling.sample_weights(s, cw)[0] / cw[0])


def test_sampler_state_round_trip_and_errors():
    a = sampling.DynamicSampler(3, "dynamic", 0.05, 0.5, 0.5)
    a.update(np.array([0.2, 0.8, 0.5]))
    b = sampling.DynamicSampler.from_state(3, json.loads(json.dumps(a.state())))
    f1 = np.array([0.3, 0.9, 0.4])
    assert np.allclose(a.update(f1), b.update(f1))
    with pytest.raises(ValueError, match="--min_share must be in"):
        sampling.DynamicSampler(4, "dynamic", 0.3)
    with pytest.raises(ValueError, match="--sampling must be"):
        sampling.DynamicSampler(4, "often")


# ---------------------------------------------------------------- data

@pytest.fixture(scope="module")
def vectors_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_vec")
    corpus = write_parquet_corpus(str(root / "corpus"), bad=False)
    run_job(corpus, root / "out", "--strategy", "none", "--num_shards", "2")
    return str(root / "out")


@pytest.fixture(scope="module")
def images_out(tmp_path_factory):
    from test_images import corpus_blobs, write_folder

    root = tmp_path_factory.mktemp("train_img")
    folder = write_folder(root / "imgs", corpus_blobs(size=20))
    run_job(folder, root / "out", "--input_format", "images", "--clusters_per_class", "2",
            "--holdout_fraction", "0.2")
    return str(root / "out")


def count_labels(batches, classes):
    counts = np.zeros(classes, int)
    for _, y in batches:
        counts += np.asarray(y).sum(axis=0).astype(int)
    return counts


def test_tf_mixture_follows_the_shares_without_rebuilding(vectors_out):
    import tensorflow as tf

    from training import data
    from training import manifest as mf

    ds = mf.load(vectors_out)
    shares = tf.Variable(np.array([1, 0, 0, 0], np.float32))
    it = iter(data.tf_train_stream(ds, "vector", shares, 16, 0, 75))
    first = count_labels([next(it) for _ in range(10)], 4)
    shares.assign(np.array([0, 0, 0.5, 0.5], np.float32))
    [next(it) for _ in range(3)]  # what was already prefetched with the old shares
    second = count_labels([next(it) for _ in range(10)], 4)
    assert first.tolist() == [160, 0, 0, 0]
    assert second[:2].sum() == 0 and second[2] > 40 and second[3] > 40


def test_parquet_mixture_follows_the_shares(vectors_out):
    from training import data
    from training import manifest as mf

    ds = mf.load(vectors_out)
    mix = data.ParquetMixture(ds, "vector", [0.7, 0.1, 0.1, 0.1], 20, 5, 0, 75)
    first = count_labels([mix[i] for i in range(5)], 4)
    mix.shares = np.array([0.0, 0.0, 0.0, 1.0])
    mix.on_epoch_end()
    second = count_labels([mix[i] for i in range(5)], 4)
    assert first[0] > 50 and second.tolist() == [0, 0, 0, 100]


# ---------------------------------------------------------------- fit

def fit(data_dir, run_dir, *extra):
    from training import fit as trainer

    return trainer.run(["--data", data_dir, "--output", str(run_dir), "--verbose", "0", *extra])


def test_fit_on_vectors_two_epochs(vectors_out, tmp_path):
    history = fit(vectors_out, tmp_path / "run", "--epochs", "2", "--batch_size", "64", "--epoch_size", "4096",
                  "--learning_rate", "0.01")
    assert [h["epoch"] for h in history] == [1, 2]
    h = history[-1]
    assert set(h) >= {"epoch", "loss", "val_loss", "val_macro_f1", "classes"}
    assert set(h["classes"]) == {"a", "b", "c", "d"}
    assert set(h["classes"]["d"]) >= {"f1", "precision", "recall", "share"}
    assert abs(sum(c["share"] for c in history[0]["classes"].values()) - 1) < 1e-6
    assert h["val_macro_f1"] > 0.5  # well-separated blobs
    run = tmp_path / "run"
    for name in ("model.keras", "history.json", "report.png", "state.json"):
        assert (run / name).exists(), name
    assert (run / "logs").is_dir()
    from training.fit import labels_in

    assert labels_in(str(run / "model.keras")) == ["a", "b", "c", "d"]
    model = keras.models.load_model(run / "model.keras", safe_mode=True)
    assert sorted(w.path for w in model.trainable_weights) == ["head/bias", "head/kernel"]


def test_fit_on_tiny_images_only_the_head_trains(images_out, tmp_path):
    history = fit(images_out, tmp_path / "run", "--epochs", "2", "--batch_size", "8", "--image_size", "75",
                  "--weights", "none", "--epoch_size", "32")
    assert [h["epoch"] for h in history] == [1, 2]
    model = keras.models.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    assert sorted(w.path for w in model.trainable_weights) == ["head/bias", "head/kernel"]
    assert model.inputs[0].shape[1:] == (75, 75, 3)
    names = {layer.name for layer in model.layers}
    assert {"flip", "rotate", "brightness", "blur"} <= names


@pytest.mark.parametrize("loss", ["ce", "weighted", "focal", "class_balanced"])
def test_every_loss_trains(vectors_out, tmp_path, loss):
    history = fit(vectors_out, tmp_path / loss, "--epochs", "1", "--loss", loss, "--epoch_size", "256",
                  "--sampling", "balanced")
    assert np.isfinite(history[0]["loss"])


def test_prior_correction_trains(vectors_out, tmp_path):
    history = fit(vectors_out, tmp_path / "pc", "--epochs", "2", "--epoch_size", "512", "--prior_correction",
                  "--dynamic_mix", "1")
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])


def test_mixed_precision_keeps_a_float32_head(vectors_out, tmp_path):
    history = fit(vectors_out, tmp_path / "mp", "--epochs", "1", "--epoch_size", "256", "--mixed_precision", "on")
    assert np.isfinite(history[0]["loss"])
    model = keras.models.load_model(tmp_path / "mp" / "model.keras", safe_mode=True)
    assert model.get_layer("head").dtype_policy.compute_dtype == "float32"
    assert model.get_layer("standardise").dtype_policy.name == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run


def test_resume_continues_with_the_same_schedule(vectors_out, tmp_path):
    full = fit(vectors_out, tmp_path / "full", "--epochs", "3", "--epoch_size", "512")
    part = fit(vectors_out, tmp_path / "part", "--epochs", "1", "--epoch_size", "512")
    assert json.dumps(part[0]) == json.dumps(full[0] | {"seconds": part[0]["seconds"]})  # same first epoch
    resumed = fit(vectors_out, tmp_path / "part", "--epochs", "3", "--epoch_size", "512", "--resume")
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    # the shares of each epoch are the rule applied to the previous epoch's F1s
    for prev, cur in zip(resumed, resumed[1:], strict=False):
        f1 = np.array([np.nan if c["f1"] is None else c["f1"] for c in prev["classes"].values()])
        want = sampling.DynamicSampler(4, "dynamic", min(0.02, 0.5 / 4), 1.0).update(f1)
        got = np.array([c["share"] for c in cur["classes"].values()])
        assert np.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="pass --resume"):
        fit(vectors_out, tmp_path / "part", "--epochs", "4")


def test_a_class_without_val_records_has_no_score(tmp_path):
    from training import evaluate

    corpus = write_parquet_corpus(str(tmp_path / "c"), files=1, bad=False, sizes={"a": 200, "b": 60, "tiny": 2})
    m = run_job(corpus, tmp_path / "out", "--strategy", "none")
    assert {c["label"]: c["holdout"] for c in m["classes"]}["tiny"] == 0
    history = fit(str(tmp_path / "out"), tmp_path / "run", "--epochs", "2", "--epoch_size", "256")
    last = history[-1]
    assert last["classes"]["tiny"]["f1"] is None and last["classes"]["tiny"]["support"] == 0
    scored = [c["f1"] for c in last["classes"].values() if c["f1"] is not None]
    assert abs(last["val_macro_f1"] - np.mean(scored)) < 1e-9
    report = evaluate.run(["--run", str(tmp_path / "run"), "--data", str(tmp_path / "out")])
    assert report["classes"]["tiny"]["f1"] is None


def test_evaluate_reports_per_class(vectors_out, tmp_path):
    from training import evaluate

    fit(vectors_out, tmp_path / "run", "--epochs", "1")
    report = evaluate.run(["--run", str(tmp_path / "run"), "--data", vectors_out])
    manifest = json.load(open(os.path.join(vectors_out, "manifest.json")))
    assert report["records"] == manifest["val"]["records"]
    assert sum(c["support"] for c in report["classes"].values()) == report["records"]
    assert (tmp_path / "run" / "confusion-val.png").exists()


def test_trainer_checks_what_it_reads(vectors_out, tmp_path):
    from training import manifest as mf

    bad = tmp_path / "copy"
    shutil.copytree(vectors_out, bad)
    m = json.load(open(bad / "manifest.json"))
    m["schema_version"] = 99
    json.dump(m, open(bad / "manifest.json", "w"))
    with pytest.raises(ValueError, match="unknown schema_version 99"):
        mf.load(str(bad))
    m["schema_version"] = 1
    m["classes"][0]["shards"]["parquet"][0]["records"] += 1
    json.dump(m, open(bad / "manifest.json", "w"))
    with pytest.raises(ValueError, match="holds .* records; .* says"):
        mf.load(str(bad))
    m["classes"][0]["shards"]["parquet"][0]["records"] -= 1
    m["classes"][0]["shards"]["parquet"][0]["path"] = "../../etc/passwd"
    json.dump(m, open(bad / "manifest.json", "w"))
    with pytest.raises(ValueError, match="points outside"):
        mf.load(str(bad))
    os.remove(os.path.join(vectors_out.replace(vectors_out, str(bad)), m["val"]["shards"]["parquet"][0]["path"]))
    m["classes"][0]["shards"]["parquet"][0]["path"] = "train/class=a/part-00000-of-00002.parquet"
    json.dump(m, open(bad / "manifest.json", "w"))
    with pytest.raises(ValueError, match="does not exist"):
        mf.load(str(bad))


def test_jax_backend_trains_from_parquet(vectors_out, tmp_path):
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax")
    args = ["--data", vectors_out, "--output", str(tmp_path / "jax"), "--epochs", "2", "--verbose", "0",
            "--batch_size", "64", "--epoch_size", "4096", "--learning_rate", "0.01"]
    code = f"from training import fit; h = fit.run({args!r}); print('MACRO', h[-1]['val_macro_f1'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    state = json.load(open(tmp_path / "jax" / "state.json"))
    assert state["args"]["backend"] == "jax" and state["args"]["reader"] == "parquet"
    assert float(out.stdout.split("MACRO")[-1]) > 0.5


def test_resume_refuses_changed_settings_and_empty_val_is_an_error(vectors_out, tmp_path):
    fit(vectors_out, tmp_path / "r", "--epochs", "1", "--epoch_size", "256")
    with pytest.raises(ValueError, match="--sampling was 'dynamic', now 'balanced'"):
        fit(vectors_out, tmp_path / "r", "--epochs", "2", "--epoch_size", "256", "--resume", "--sampling", "balanced")
    corpus = write_parquet_corpus(str(tmp_path / "c"), files=1, bad=False)
    run_job(corpus, tmp_path / "noval", "--strategy", "none", "--holdout_fraction", "0")
    with pytest.raises(ValueError, match="has no val records"):
        fit(str(tmp_path / "noval"), tmp_path / "r2", "--epochs", "1")
