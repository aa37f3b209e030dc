"""The seeds' lessons (examples/fc_vs_cnn.py ... signal_conv1d.py) run end to end on tiny data,
and the pieces they teach with are checked against independent references (SciPy, NumPy,
scikit-learn, explicit loops)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nbconv as nc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = ("fc_vs_cnn", "feature_extraction", "visualize_filters", "image_filters",
           "signal_conv1d")


@pytest.fixture(autouse=True)
def _examples_on_path(monkeypatch):
    # `python examples/x.py` puts examples/ first on sys.path; do the same in-process.
    monkeypatch.syspath_prepend(str(EXAMPLES))


def script(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def is_png(path):
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lenet_file(tmp_path_factory):
    """An (untrained) ReLU LeNet-5 in a model file with normalisation metadata, as
    examples/train_lenet.py writes it; the lessons' mechanics do not need a trained one."""
    path = tmp_path_factory.mktemp("model") / "lenet5.h5"
    nc.manual_seed(0)
    nc.save(nc.models.lenet5(activation="relu"), path,
            metadata={"dataset": "none (random weights)", "mean": 0.2, "std": 0.3})
    return path


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_and_docstring(name, capsys, monkeypatch):
    mod = script(name)
    assert "What to expect" in mod.__doc__ or "Expected" in mod.__doc__
    with pytest.raises(SystemExit) as e:
        mod.parse_args(["--help"])
    assert e.value.code == 0
    assert "--out" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["fc_vs_cnn", "image_filters"])
def test_help_as_a_script(name):
    out = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout and "--out" in out.stdout


# -- fc_vs_cnn ---------------------------------------------------------------------------------
def test_fc_vs_cnn_pieces():
    mod = script("fc_vs_cnn")
    net = mod.mlp()
    assert sum(p.data.size for p in net.parameters()) == 784 * 56 + 56 + 56 * 10 + 10
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 28, 28), dtype=np.float32)
    perm = rng.permutation(784)
    xp = mod.permute_pixels(x, perm)
    np.testing.assert_array_equal(xp.reshape(3, 784), x.reshape(3, 784)[:, perm])
    # The MLP is blind to the pixel order: permuting the first layer's input columns the same
    # way gives the same outputs on the permuted images.
    permuted = mod.mlp()
    permuted.load_state_dict({**net.state_dict(), "1.weight": net[1].weight.data[:, perm]})
    np.testing.assert_allclose(permuted(xp), net(x), rtol=1e-5, atol=1e-6)


def test_fc_vs_cnn_end_to_end(tmp_path, capsys):
    out = tmp_path / "fc.png"
    report = script("fc_vs_cnn").main([
        "--dataset", "digits", "--train-size", "200", "--test-size", "100", "--epochs", "1",
        "--out", str(out), "--no-progress"])
    assert is_png(out)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["test_accuracy"] == report["test_accuracy"]
    acc = report["test_accuracy"]
    assert set(acc) == {"MLP", "LeNet-5"}
    assert all(set(r) == {"natural", "permuted"} for r in acc.values())
    assert all(0.0 <= v <= 1.0 for r in acc.values() for v in r.values())
    assert report["parameters"] == {"MLP": 44530, "LeNet-5": 44426}
    text = capsys.readouterr().out
    assert "scikit-learn digits" in text and text.strip().splitlines()[-1].startswith(
        "CNN minus MLP:")


# -- image_filters -------------------------------------------------------------------------------
def test_image_filters_match_scipy():
    from scipy import ndimage

    mod = script("image_filters")
    img = np.random.default_rng(0).random((23, 31))
    out = mod.apply_filters(img, 1.5)
    np.testing.assert_allclose(out["sobel x"], ndimage.sobel(img, axis=1, mode="reflect"),
                               atol=1e-12)
    np.testing.assert_allclose(out["sobel y"], ndimage.sobel(img, axis=0, mode="reflect"),
                               atol=1e-12)
    np.testing.assert_allclose(out["prewitt x"], ndimage.prewitt(img, axis=1, mode="reflect"),
                               atol=1e-12)
    np.testing.assert_allclose(out["prewitt"], np.hypot(ndimage.prewitt(img, axis=1),
                                                        ndimage.prewitt(img, axis=0)),
                               atol=1e-12)
    np.testing.assert_allclose(out["blur"], ndimage.gaussian_filter(img, 1.5, mode="mirror"),
                               atol=1e-12)
    k = mod.gaussian_kernel(1.5)
    assert k.shape == (13, 13) and k.sum() == pytest.approx(1.0)


def test_image_filters_end_to_end(tmp_path, capsys):
    import matplotlib.image as mpimg

    mod = script("image_filters")
    user = tmp_path / "user.png"
    img = np.zeros((20, 24))
    img[5:15, 8:16] = 1.0  # a bright square: edges on its outline only
    mpimg.imsave(user, img, cmap="gray")
    out = tmp_path / "filters.png"
    diffs = mod.main(["--image", "digit", "photo", str(user), "--out", str(out)])
    assert is_png(out) and len(diffs) == 3
    assert all(v < 1e-10 for d in diffs.values() for v in d.values())
    name, loaded = mod.load_image(str(user))
    np.testing.assert_allclose(loaded, img, atol=1e-2)
    mag = mod.apply_filters(loaded, 1.0)["sobel"]
    assert mag[10, 2] == pytest.approx(0.0, abs=1e-6) and mag[10, 8] > 1.0  # flat vs edge
    assert "largest |nbconv - scipy.ndimage|" in capsys.readouterr().out


# -- signal_conv1d -------------------------------------------------------------------------------
def test_signal_pieces_match_numpy():
    from scipy import ndimage

    mod = script("signal_conv1d")
    rng = np.random.default_rng(0)
    s, k = rng.standard_normal(200), rng.standard_normal(9)
    np.testing.assert_allclose(mod.filter1d(s, k), ndimage.correlate1d(s, k, mode="mirror"),
                               atol=1e-12)
    pulse = mod.make_pulse()
    rec = rng.standard_normal(700)
    np.testing.assert_allclose(mod.matched_filter(rec, pulse), np.correlate(rec, pulse, "valid"),
                               atol=1e-10)
    x, y = mod.make_signals(30, seed=1)
    assert x.shape == (30, 1, 128) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [10, 10, 10]
    assert mod.cnn1d()(x).shape == (30, 3)


def test_signal_conv1d_end_to_end(tmp_path, capsys):
    out = tmp_path / "sig.png"
    report = script("signal_conv1d").main(["--train-size", "60", "--test-size", "30",
                                           "--epochs", "1", "--out", str(out),
                                           "--no-progress"])
    assert is_png(out) and json.loads(out.with_suffix(".json").read_text())["matched_filter"]
    sm = report["smoothing"]
    assert sm["rms_noisy"] == pytest.approx(0.3, rel=0.1)
    assert sm["rms_moving_average"] < 0.5 * sm["rms_noisy"]
    assert sm["rms_gaussian"] < 0.5 * sm["rms_noisy"]
    mf = report["matched_filter"]
    assert mf["found_start"] == mf["true_start"] and mf["peak_sigmas"] > 3
    assert np.sum(report["classifier"]["confusion"]) == 30
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("test accuracy: ")


# -- feature_extraction --------------------------------------------------------------------------
def test_feature_extraction_pieces(lenet_file):
    from scipy.spatial.distance import cdist
    from sklearn.decomposition import PCA

    mod = script("feature_extraction")
    model = nc.load(lenet_file).eval()
    x = np.random.default_rng(0).random((7, 1, 28, 28), dtype=np.float32)
    f = mod.penultimate_features(model, x, 0.2, 0.3, batch_size=3)
    assert f.shape == (7, 84)
    with nc.no_grad():  # the features are what the classifier layer sees
        np.testing.assert_allclose(model[-1](f), model((x - 0.2) / 0.3), rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(1)
    a, b, ya = rng.standard_normal((50, 5)), rng.standard_normal((20, 5)), rng.integers(0, 4, 50)
    np.testing.assert_array_equal(mod.nearest_neighbour(a, ya, b, chunk=6),
                                  ya[np.argmin(cdist(b, a), axis=1)])
    z, ratio = mod.pca_2d(a)
    ref = PCA(2).fit(a)
    np.testing.assert_allclose(np.abs(z), np.abs(ref.transform(a)), atol=1e-10)
    assert ratio == pytest.approx(ref.explained_variance_ratio_.sum())
    with pytest.raises(TypeError, match="'model'"):
        mod.penultimate_features(nc.models.seed_net(), x, 0.0, 1.0)


def test_feature_extraction_end_to_end(tmp_path, lenet_file, capsys):
    out = tmp_path / "fe.png"
    report = script("feature_extraction").main([
        "--model", str(lenet_file), "--dataset", "digits", "--train-size", "300",
        "--test-size", "80", "--knn-train", "100", "--probe-epochs", "1", "--embed", "60",
        "--out", str(out), "--no-progress"])
    assert is_png(out)
    assert report["dimensions"] == {"pixels": 784, "features": 84}
    for kind in ("pixels", "features"):
        assert set(report["test_accuracy"][kind]) == {
            "nearest_neighbour", "linear", "pca_2d_nearest_neighbour",
            "pca_2d_explained_variance"}
    # raw pixels of the digits: 1-NN is a strong classifier, far above chance
    assert report["test_accuracy"]["pixels"]["nearest_neighbour"] > 0.7
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "linear classifier on the features: test accuracy ")


def test_lenet_is_trained_and_saved_when_the_model_file_is_missing(tmp_path, capsys):
    path = tmp_path / "new.h5"
    args = script("feature_extraction").parse_args(
        ["--dataset", "digits", "--train-size", "200", "--test-size", "50"])
    from example_data import load_or_train_lenet

    model, mean, std = load_or_train_lenet(path, args, epochs=1, progress=False)
    assert path.is_file() and "training LeNet-5" in capsys.readouterr().out
    _, _, meta = nc.load_state(path)
    assert meta["mean"] == pytest.approx(mean) and meta["std"] == pytest.approx(std)
    again, mean2, _ = load_or_train_lenet(path, args, epochs=1, progress=False)
    assert mean2 == pytest.approx(mean) and "model: " in capsys.readouterr().out
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)


# -- visualize_filters ---------------------------------------------------------------------------
def test_maximise_raises_the_activation_within_the_pixel_range(lenet_file):
    mod = script("visualize_filters")
    model = nc.load(lenet_file).eval()
    body = list(model)[:4]
    lo, hi = -0.2 / 0.3, 0.8 / 0.3
    x, trace = mod.maximise(body, [0, 5, 5], (1, 28, 28), lo, hi, steps=15)
    assert x.shape == (3, 1, 28, 28) and trace.shape == (16, 3)
    assert np.all(x >= lo) and np.all(x <= hi)
    assert np.all(trace[-1] > trace[0])
    # the trace is the mean activation of the returned images (independent forward pass)
    np.testing.assert_allclose(mod.mean_activation(body, x)[[0, 1, 2], [0, 5, 5]], trace[-1],
                               rtol=1e-5, atol=1e-6)
    assert all(not np.any(p.grad) for p in model.parameters())


def test_visualize_filters_end_to_end(tmp_path, lenet_file, capsys):
    out = tmp_path / "vf.png"
    report = script("visualize_filters").main([
        "--model", str(lenet_file), "--dataset", "digits", "--test-size", "40",
        "--filters", "1", "4", "--steps", "10", "--out", str(out), "--no-progress"])
    assert is_png(out)
    assert report["layer"] == 3 and report["filters"] == [1, 4]
    assert len(report["optimised_activation"]) == 2
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("optimised inputs")
    with pytest.raises(SystemExit, match="--filters"):
        script("visualize_filters").main(["--model", str(lenet_file), "--dataset", "digits",
                                          "--filters", "16", "--out", str(out)])


def test_bad_arguments_exit_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        script("image_filters").main(["--image", str(tmp_path / "missing.png")])
    with pytest.raises(SystemExit, match="--epochs"):
        script("fc_vs_cnn").main(["--dataset", "digits", "--epochs", "0"])
    with pytest.raises(SystemExit, match="--epochs"):
        script("signal_conv1d").main(["--epochs", "0"])
