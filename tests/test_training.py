"""training.fit and training.evaluate on small balanced outputs (vectors and tiny images)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import run_job, write_parquet_corpus
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


def count_labels(batches, classes):
    counts = np.zeros(classes, int)
    for _, y in batches:
        counts += np.asarray(y).sum(axis=0).astype(int)
    return counts


def rows(batches):
    return [tuple(np.asarray(x)[j].round(5)) for x, _, _ in batches for j in range(len(x))]


def test_tf_mixture_follows_the_shares_covers_each_class_and_resumes_in_place(vectors_out, monkeypatch):
    from training import manifest as mf
    from training import mixtures

    monkeypatch.setattr(mixtures, "SHUFFLE_BUFFER", 64)  # classes of several shuffle blocks
    ds = mf.load(vectors_out)
    size = ds.output[0]
    ones = np.ones(4)
    mix = mixtures.TFRecordMixture(ds, "vector", 16, size // 16, 0, 75)
    first = list(mix.epoch(0, [1, 0, 0, 0], ones))
    assert count_labels([(x, y) for x, y, _ in first], 4).tolist() == [size // 16 * 16, 0, 0, 0]
    second = list(mix.epoch(1, [1, 0, 0, 0], ones))
    one_pass = rows(first + second)[:size]  # the stream goes on where the last epoch stopped:
    assert len(set(one_pass)) == size  # a pass draws every record of the class once
    third = count_labels([(x, y) for x, y, _ in mix.epoch(2, [0, 0, 0.5, 0.5], [1, 2, 3, 4])], 4)
    assert third[:2].sum() == 0 and third[2] > 0.3 * third.sum() and third[3] > 0.3 * third.sum()
    weighted = list(mix.epoch(3, [0.25] * 4, [1, 2, 3, 4]))
    assert all((np.asarray(w) == np.argmax(y, axis=1) + 1).all() for _, y, w in weighted)  # its class weight
    # a resumed run's mixture starts each class where the history says, and draws the same
    shares = [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0.5, 0.5], [0.25] * 4]
    again = mixtures.TFRecordMixture(ds, "vector", 16, size // 16, 0, 75,
                                 drawn=mixtures.drawn_before(0, shares, size // 16 * 16, 4))
    fresh = list(mix.epoch(4, [0.4, 0.3, 0.2, 0.1], ones))
    assert rows(list(again.epoch(4, [0.4, 0.3, 0.2, 0.1], ones))) == rows(fresh)


def test_parquet_mixture_follows_the_shares_and_replays_an_epoch(vectors_out):
    from training import manifest as mf
    from training import mixtures

    ds = mf.load(vectors_out)

    def epoch(shares, e):
        mix = mixtures.ParquetMixture(ds, "vector", shares, [1.0, 2.0, 3.0, 4.0], 20, 5, 0, 75, e)
        return [mix[i] for i in range(len(mix))]

    first = epoch([0.7, 0.1, 0.1, 0.1], 0)
    assert count_labels([(x, y) for x, y, _ in first], 4)[0] > 50
    assert all((w == np.argmax(y, axis=1) + 1).all() for _, y, w in first)  # the class's sample weight
    assert count_labels([(x, y) for x, y, _ in epoch([0, 0, 0, 1], 0)], 4).tolist() == [0, 0, 0, 100]
    assert rows(epoch([0.25] * 4, 3)) == rows(epoch([0.25] * 4, 3))
    assert rows(epoch([0.25] * 4, 3)) != rows(epoch([0.25] * 4, 4))


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
    from training.model import labels_in

    assert labels_in(str(run / "model.keras")) == ["a", "b", "c", "d"]
    model = keras.models.load_model(run / "model.keras", safe_mode=True)
    assert sorted(w.path for w in model.trainable_weights) == ["head/bias", "head/kernel"]


def test_fit_on_tiny_images_only_the_head_trains(image_run):
    _, _, run, history = image_run  # 2 epochs of 32 images, batch 8, 75 px, random weights
    assert [h["epoch"] for h in history] == [1, 2]
    model = keras.models.load_model(run / "model.keras", safe_mode=True)
    assert sorted(w.path for w in model.trainable_weights) == ["head/bias", "head/kernel"]
    assert model.inputs[0].shape[1:] == (75, 75, 3)
    names = {layer.name for layer in model.layers}
    assert {"flip", "rotate", "brightness", "blur"} <= names


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_each_epoch_ends_on_the_moving_average_of_the_weights(momentum):
    """What the epoch's callbacks see (and val scores, and model.keras keeps) is the moving
    average of the weights after each step, recomputed here from those weights; off: the last step's."""
    from training.callbacks import EndOnAverage
    from training.model import build_vector_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)
    model = build_vector_model(2, 5, x)
    averaging = {"use_ema": True, "ema_momentum": momentum} if momentum else {}
    model.compile(optimizer=keras.optimizers.Adam(0.05, **averaging), loss="categorical_crossentropy")
    steps, seen = [], {}

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(self.model.get_layer("head").get_weights()[0].copy())

        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = self.model.get_layer("head").get_weights()[0].copy()

    callbacks = [EndOnAverage(), Probe()]
    for epoch in range(2):  # one fit per epoch, as training.fit calls it
        model.fit(x, y, batch_size=32, epochs=epoch + 1, initial_epoch=epoch, callbacks=callbacks, verbose=0,
                  shuffle=False)
    expected, average = {}, None
    for i, w in enumerate(steps):
        average = w if average is None else momentum * average + (1 - momentum) * w
        if i % 8 == 7:  # 256 / 32 steps an epoch; the next epoch starts from the average
            expected[i // 8] = average
            assert np.allclose(steps[i], average) == (momentum == 0)
    for epoch in range(2):
        np.testing.assert_allclose(seen[epoch], expected[epoch], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_layer("head").get_weights()[0], expected[1], rtol=1e-5, atol=1e-6)


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


@pytest.fixture(scope="module")
def parquet_only_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_parquet")
    corpus = write_parquet_corpus(str(root / "corpus"), bad=False)
    run_job(corpus, root / "out", "--strategy", "none", "--num_shards", "2", "--output_format", "parquet")
    return str(root / "out")


@pytest.mark.parametrize("shards", ["tfrecord", "parquet"])
def test_kill_minus_9_mid_epoch_then_resume_gives_the_uninterrupted_history(request, shards, tmp_path):
    vectors_out = request.getfixturevalue("vectors_out" if shards == "tfrecord" else "parquet_only_out")
    args = ["--epochs", "3", "--epoch_size", "8000", "--batch_size", "32"]
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training.fit", "--data", vectors_out, "--output", str(run), "--verbose", "0", *args]
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, state = time.time() + 180, run / "state.json"
    while time.time() < deadline and job.poll() is None and not state.exists():
        time.sleep(0.02)
    assert job.poll() is None, "the run ended before it could be killed"
    epoch_seconds = json.loads((run / "history.json").read_text())[0]["seconds"]
    time.sleep(epoch_seconds / 3)  # part-way through epoch 2
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert json.loads(state.read_text())["epoch"] == 1, "killed too late: epoch 2 had finished"

    resumed = fit(vectors_out, run, *args, "--resume")
    full = fit(vectors_out, tmp_path / "full", *args)
    assert json.loads(state.read_text())["args"]["reader"] == shards
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    for got, want in zip(resumed, full, strict=True):
        assert got["val_macro_f1"] == pytest.approx(want["val_macro_f1"], abs=1e-9)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)  # floating-point noise only
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-4)
        for label, c in want["classes"].items():
            assert got["classes"][label]["share"] == pytest.approx(c["share"], abs=1e-12)
            assert got["classes"][label]["f1"] == pytest.approx(c["f1"], abs=1e-9)
    # the shares of each epoch are the rule (the default precision-recall controller) applied
    # to the previous epochs' val scores
    replay = sampling.DynamicSampler(4, "dynamic", min(0.02, 0.5 / 4), rule="precision_recall", rate=2.0, shrink=50.0)
    for prev, cur in zip(resumed, resumed[1:], strict=False):
        score = {k: np.array([np.nan if c[k] is None else c[k] for c in prev["classes"].values()])
                 for k in ("f1", "precision", "recall", "support")}
        want = replay.update(score["f1"], score["precision"], score["recall"], score["support"])
        got = np.array([c["share"] for c in cur["classes"].values()])
        assert np.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="pass --resume"):
        fit(vectors_out, run, "--epochs", "4")


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
    manifest = str(bad / "manifest.json")
    m = json.load(open(manifest))

    def fails(match):
        json.dump(m, open(manifest, "w"))
        with pytest.raises(ValueError, match=match):
            mf.check_tfrecord_counts(mf.load(str(bad)))

    m["schema_version"] = 99
    fails(f"{manifest}: unknown schema_version 99")
    m["schema_version"] = 2
    parquet, tfrecord = m["classes"][0]["shards"]["parquet"][0], m["classes"][1]["shards"]["tfrecord"][0]
    parquet["records"] += 1
    fails(rf"{bad / parquet['path']} holds \d+ records; {manifest} says {parquet['records']}")
    parquet["records"] -= 1
    tfrecord["records"] += 1
    fails(rf"{bad / tfrecord['path']} holds \d+ records; {manifest} says {tfrecord['records']}")
    tfrecord["records"] -= 1
    json.dump(m, open(manifest, "w"))
    mf.check_tfrecord_counts(mf.load(str(bad)))  # as written: every count checks out
    shard = bad / tfrecord["path"]
    shard.write_bytes(shard.read_bytes()[:-40])  # cut short
    fails(f"{shard} cannot be read after")
    parquet["path"], path = "../../etc/passwd", parquet["path"]
    fails(f"{manifest}: shard path '../../etc/passwd' points outside")
    parquet["path"] = path
    pq_shard = bad / parquet["path"]
    whole = pq_shard.read_bytes()
    pq_shard.write_bytes(whole[:-100])  # a Parquet shard cut short: the error names it
    fails(rf"{pq_shard} cannot be read \(ArrowInvalid: .*Parquet magic bytes not found")
    pq_shard.write_bytes(whole)
    os.remove(bad / m["val"]["shards"]["parquet"][0]["path"])
    fails(f"{bad / m['val']['shards']['parquet'][0]['path']} is listed in {manifest} but does not exist")


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
    with pytest.raises(ValueError, match="--weight_averaging was 0.9, now 0.5"):
        fit(vectors_out, tmp_path / "r", "--epochs", "2", "--epoch_size", "256", "--resume", "--weight_averaging", "0.5")
    # built into the saved model and optimizer: a new value could not take effect
    with pytest.raises(ValueError, match=r"--learning_rate was not given \(the default\), now 0.5; --l2 was 20.0, now 1.0"):
        fit(vectors_out, tmp_path / "r", "--epochs", "2", "--epoch_size", "256", "--resume", "--learning_rate", "0.5",
            "--l2", "1")
    state_file = tmp_path / "r" / "state.json"  # a run started before --weight_averaging existed
    state = json.loads(state_file.read_text())
    del state["args"]["weight_averaging"]
    state_file.write_text(json.dumps(state))
    fit(vectors_out, tmp_path / "r", "--epochs", "2", "--epoch_size", "256", "--resume")
    assert json.loads(state_file.read_text())["args"]["weight_averaging"] == 0.0  # what its optimizer does
    corpus = write_parquet_corpus(str(tmp_path / "c"), files=1, bad=False)
    run_job(corpus, tmp_path / "noval", "--strategy", "none", "--holdout_fraction", "0")
    with pytest.raises(ValueError, match="has no val records"):
        fit(str(tmp_path / "noval"), tmp_path / "r2", "--epochs", "1")


# The settings a resume keeps, before training/config.py derived them from the fields.
KEPT_BEFORE_CONFIG = {"sampling", "min_share", "dynamic_mix", "f1_smoothing", "prior_correction", "loss", "cb_beta",
                      "focal_gamma", "inputs", "image_size", "batch_size", "epoch_size", "seed", "dynamic_rule",
                      "dynamic_rate", "dynamic_shrink", "weight_averaging", "learning_rate", "l2", "standardize",
                      "augment", "weights"}


def test_resume_keeps_the_settings_marked_in_the_config(tmp_path):
    from dataclasses import make_dataclass

    from training import config, run_state

    assert set(config.fixed_settings()) == KEPT_BEFORE_CONFIG
    assert config.before_flag() == {"weight_averaging": 0.0}
    # a new field marked kept_on_resume is checked on resume, with no list to update; an unmarked one is not
    extended = make_dataclass("Extended", [("new_knob", float, config.setting(1.0, "A knob.", kept=True)),
                                           ("free_knob", float, config.setting(1.0, "Another."))],
                              bases=(config.TrainConfig,), frozen=True)
    assert config.fixed_settings(extended) == (*config.fixed_settings(), "new_knob")
    started = extended(data="out").settings()
    state = {"epoch": 1, "checkpoint": "checkpoint-a.keras", "best": 0.5, "args": started,
             "sampler": sampling.DynamicSampler(3).state()}
    (tmp_path / run_state.STATE).write_text(json.dumps(state))
    (tmp_path / run_state.HISTORY).write_text(json.dumps([{"epoch": 1, "val_macro_f1": 0.5}]))
    with pytest.raises(ValueError, match=r"--resume continues a run as it was started: --new_knob was 1.0, now 2.0\.$"):
        run_state.resumed(str(tmp_path), started | {"new_knob": 2.0}, 3, extended)
    _, _, history = run_state.resumed(str(tmp_path), started | {"free_knob": 2.0}, 3, extended)
    assert history == [{"epoch": 1, "val_macro_f1": 0.5}]
    # TrainConfig itself: every kept setting refused when changed, the others not
    plain = config.TrainConfig(data="out").settings()
    for name in plain:
        changed = plain | {name: "changed"}
        state["args"] = plain
        (tmp_path / run_state.STATE).write_text(json.dumps(state))
        if name in KEPT_BEFORE_CONFIG:
            with pytest.raises(ValueError, match=f"--{name} was "):
                run_state.resumed(str(tmp_path), changed, 3)
        else:
            run_state.resumed(str(tmp_path), changed, 3)


def test_flags_are_the_config_fields_and_every_help_prints_its_default():
    import dataclasses

    from training import config, fit

    ap = fit.parser()
    actions = [a for a in ap._actions if a.dest != "help"]
    fields = dataclasses.fields(config.TrainConfig)
    assert [a.dest for a in actions] == [f.name for f in fields]
    assert config.from_args(ap.parse_args(["--data", "out"])) == config.TrainConfig(data="out")
    formatter = ap._get_formatter()
    for action, f in zip(actions, fields, strict=True):
        text = " ".join(formatter._expand_help(action).split())
        if f.default is dataclasses.MISSING:
            assert action.required
        elif f.default is None:  # chosen at run time: the text says how
            assert "(default: " in text, (action.dest, text)
        else:
            assert action.default == f.default and f"(default: {f.default}" in text, (action.dest, text)
    text = ap.format_help()
    assert "(default: 0.9: about the last 10 steps" in " ".join(text.split())
    assert "%(default)" not in text


def test_augmentation_after_a_resume_equals_an_uninterrupted_run(tmp_path):
    """Keras does not save the augmentation layers' random counters: each epoch resets them."""
    from training import model as models

    model = models.build_image_model(3, 75, "none", True, 0)
    augment = keras.Sequential([model.get_layer(n) for n in ("flip", "rotate", "brightness", "blur")])
    x = np.random.default_rng(0).uniform(0, 255, (4, 75, 75, 3)).astype("float32")
    models.reseed_augmentation(model, 2)
    first = [keras.ops.convert_to_numpy(augment(x, training=True)) for _ in range(2)]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    models.reseed_augmentation(loaded, 2)
    again = keras.Sequential([loaded.get_layer(n) for n in ("flip", "rotate", "brightness", "blur")])
    second = [keras.ops.convert_to_numpy(again(x, training=True)) for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[1])  # the stream moves on within an epoch
    models.reseed_augmentation(loaded, 3)
    assert not np.array_equal(first[0], keras.ops.convert_to_numpy(again(x, training=True)))
