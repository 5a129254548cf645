"""Any model: tiny random transformers models built offline, saved to a folder, run end to end.

BERT (nn.Linear), GPT-2 (Conv1D, causal), ViT (patch Conv2d, the DeiT family's
architecture) and a Llama-style causal LM, each built from its config with tiny
sizes and random weights (nothing is downloaded). The models are random, so the
model-level numbers (perplexity included) only prove the code path.
"""
import json
import os
import string

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gilora_theory import cli  # noqa: E402
from gilora_theory.data import torch_adapter as ta  # noqa: E402
from gilora_theory.data.io import load_layer  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
_EPS64 = np.finfo(np.float64).eps
_EPS32 = float(np.finfo(np.float32).eps)
_VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
          + list(string.ascii_lowercase + string.digits + string.punctuation)
          + ["##" + c for c in string.ascii_lowercase + string.digits])
_TEXT = " ".join(f"sentence {k} says {w} to the model." for k in range(400)
                 for w in ("hello", "goodbye", "thanks"))


def _config(arch):
    V = len(_VOCAB)
    small = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24)
    if arch == "bert":
        return transformers.BertModel, transformers.BertConfig(vocab_size=V, max_position_embeddings=64, **small)
    if arch == "gpt2":
        return transformers.GPT2LMHeadModel, transformers.GPT2Config(
            vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=64, bos_token_id=2, eos_token_id=3)
    if arch == "vit":
        return transformers.ViTModel, transformers.ViTConfig(image_size=8, patch_size=4, num_channels=3, **small)
    return transformers.LlamaForCausalLM, transformers.LlamaConfig(
        vocab_size=V, max_position_embeddings=64, num_key_value_heads=1, bos_token_id=2, eos_token_id=3,
        pad_token_id=0, **small)


ARCHS = ("bert", "gpt2", "vit", "llama")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One saved checkpoint folder per architecture (tokenizer beside the text models)."""
    out = {}
    transformers.utils.logging.disable_progress_bar()
    for arch in ARCHS:
        cls, config = _config(arch)
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(arch)
        cls(config).eval().save_pretrained(path)
        if arch != "vit":
            transformers.BertTokenizer(vocab={t: i for i, t in enumerate(_VOCAB)}).save_pretrained(path)
        out[arch] = path
    text = tmp_path_factory.mktemp("text") / "calib.txt"
    text.write_text(_TEXT, encoding="utf-8")
    out["text"] = text
    return out


def _hooked_rows(model, batches, name):
    """Input rows of layer ``name`` collected by a plain forward hook, padding removed by hand."""
    module = ta.linear_layers(model)[name]
    seen = []
    h = module.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().double()))
    with torch.no_grad():
        for b in batches:
            seen.clear()
            model(**b)
            x = seen[0]
            if isinstance(module, torch.nn.Conv2d):
                k = module.kernel_size[0]
                B, C, S, _ = x.shape
                x = x.reshape(B, C, S // k, k, S // k, k).permute(0, 2, 4, 1, 3, 5).reshape(-1, C * k * k)
            elif x.dim() == 3 and "attention_mask" in b:
                x = x[b["attention_mask"].bool()]
            yield x.reshape(-1, x.shape[-1])
    h.remove()


def _layer_output(module, x):
    with torch.no_grad():
        return module(x).double()


@pytest.mark.parametrize("arch", ARCHS)
def test_extract_from_a_folder_gives_H_of_the_hooked_inputs_and_the_paper_W(arch, folders, tmp_path, capsys):
    out = tmp_path / "layers"
    argv = ["extract", "--model", str(folders[arch]), "--out", str(out), "--sequences", "4",
            "--seq-len", "12", "--batch-size", "2", "--no-progress"]
    if arch != "vit":
        argv += ["--text", str(folders["text"])]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    loaded = ta.load_model(str(folders[arch]))
    layers = ta.linear_layers(loaded.model)
    assert summary["layers"] == len(layers) and summary["written"] == len(layers)
    batches = ta.model_batches(loaded, sequences=4, seq_len=12, batch_size=2,
                               text=None if arch == "vit" else _TEXT)
    kinds = {type(m).__name__ for m in layers.values()}
    assert {"bert": "Linear", "gpt2": "Conv1D", "vit": "Conv2d", "llama": "Linear"}[arch] in kinds
    for name in [n for n, m in layers.items() if type(m).__name__ in ("Conv1D", "Conv2d")][:2] + list(layers)[:1]:
        lay = load_layer(out / f"{name}.npz")
        X = torch.cat(list(_hooked_rows(loaded.model, batches, name))).numpy()
        tol = 16 * X.shape[0] * _EPS64 * float(np.max(np.abs(X)) ** 2)
        assert lay.n_samples == X.shape[0]
        assert np.max(np.abs(lay.H - X.T @ X)) <= tol
        module = layers[name]
        W = ta.weight_matrix(module)
        assert np.array_equal(lay.W, W)
        x = torch.randn((2, *module.weight.shape[1:]) if isinstance(module, torch.nn.Conv2d)
                        else (3, W.shape[0]), dtype=module.weight.dtype)
        y = _layer_output(module, x)
        rows = ta.input_rows(module, x).double().numpy()
        bias = 0 if module.bias is None else module.bias.detach().double().numpy()
        ref = y.permute(0, 2, 3, 1).reshape(-1, W.shape[1]) if y.dim() == 4 else y
        assert np.allclose(rows @ W + bias, ref.numpy(), rtol=0, atol=64 * _EPS32 * W.shape[0])
    # the layer files load into `run`
    first = out / f"{list(layers)[0]}.npz"
    assert cli.main(["run", str(first), "--method", "gptq", "--bits", "3",
                     "--out", str(tmp_path / "q.npz")]) == 0
    assert json.loads(capsys.readouterr().out)["error"] >= 0


@pytest.mark.parametrize("arch", ARCHS)
def test_write_back_round_trip_merged_and_branch(arch, folders):
    loaded = ta.load_model(str(folders[arch]))
    model = loaded.model
    batches = ta.model_batches(loaded, sequences=2, seq_len=10, batch_size=2,
                               text=None if arch == "vit" else _TEXT)
    rng = np.random.default_rng(0)
    parts = {}
    for name, m in ta.linear_layers(model).items():
        W = ta.weight_matrix(m)
        L = rng.standard_normal((W.shape[0], 2)) * 0.05
        R = rng.standard_normal((2, W.shape[1])) * 0.05
        parts[name] = (W - L @ R, L, R)
    same = {n: (ta.weight_matrix(m), np.zeros((Q.shape[0], 0)), np.zeros((0, Q.shape[1])))
            for (n, (Q, L, R)), m in zip(parts.items(), ta.linear_layers(model).values())}
    ref = ta.output_shift(model, ta.reconstructed(model, same), batches)
    assert ref.hidden_relative_error == 0.0 and ref.neighbour_overlap == 1.0
    merged = ta.output_shift(model, ta.reconstructed(model, parts), batches)
    branch = ta.output_shift(model, ta.reconstructed(model, parts, branch=True), batches)
    kept = ta.hidden_states(model, batches)       # one reference for many candidates (C16)
    assert ta.output_shift(model, ta.reconstructed(model, parts), batches,
                           reference_hidden=kept) == merged
    with pytest.raises(ValueError, match="reference_hidden"):
        ta.output_shift(model, model, batches, reference_hidden=kept[:-1] + kept + kept)
    for s in (merged, branch):
        assert s.hidden_relative_error < 1e-8 and s.embedding_cosine > 1 - 1e-6
    broken = {n: (Q, L, -R) for n, (Q, L, R) in parts.items()}  # negative case: a wrong branch shows
    assert ta.output_shift(model, ta.reconstructed(model, broken, branch=True), batches).hidden_relative_error > 1e-6


def _perturbed(model, names, seed=0):
    rng = np.random.default_rng(seed)
    layers = ta.linear_layers(model)
    out = {}
    for n in names:
        W = ta.weight_matrix(layers[n])
        out[n] = (W + 0.05 * rng.standard_normal(W.shape), np.zeros((W.shape[0], 0)),
                  np.zeros((0, W.shape[1])))
    return out


def _calls(model, name):
    """Counter of forward calls of the linear layer ``name`` of ``model``."""
    count = [0]
    ta.linear_layers(model)[name].register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


@pytest.mark.parametrize("arch", ARCHS)
def test_candidates_start_at_the_first_changed_block(arch, folders):
    """``hidden_states(changing=...)`` lets ``output_shift`` skip the blocks before the first
    changed one: the same bits as the whole forward, and block 0 never runs. A candidate
    that also changed block 0 runs whole: skipping would give other numbers (the guard can
    fail, and it matters)."""
    loaded = ta.load_model(str(folders[arch]))
    model = loaded.model
    batches = ta.model_batches(loaded, sequences=4, seq_len=10, batch_size=2,
                               text=None if arch == "vit" else _TEXT)
    names = list(ta.linear_layers(model))
    block = [n.split(".") for n in names]
    late = [n for n, p in zip(names, block) if "1" in p]
    early = [n for n, p in zip(names, block) if "0" in p]
    assert late and early
    kept = ta.hidden_states(model, batches, changing=late)
    assert kept.prefix is not None and kept.prefix.start == 1
    assert all(torch.equal(a, b) for a, b in zip(kept, ta.hidden_states(model, batches)))
    assert ta.hidden_states(model, batches, changing=early + late).prefix is None
    with pytest.raises(ValueError, match="changing"):
        ta.hidden_states(model, batches, changing=["no.such.layer"])

    cand = ta.reconstructed(model, _perturbed(model, late))
    whole = ta.output_shift(model, cand, batches)
    ran = _calls(cand, early[0])
    fast = ta.output_shift(model, cand, batches, reference_hidden=kept)
    assert fast == whole and ran[0] == 0 and whole.hidden_relative_error > 0

    both = ta.reconstructed(model, _perturbed(model, [early[0]] + late))
    ran = _calls(both, early[0])
    guarded = ta.output_shift(model, both, batches, reference_hidden=kept)
    assert ran[0] > 0 and guarded == ta.output_shift(model, both, batches)
    skipped = ta._forward_hidden(both, ta._hidden_batches(model, batches), kept.prefix)
    assert not all(torch.equal(a, b) for a, b in zip(skipped, ta.hidden_states(both, batches)))


def test_padding_never_enters_H(folders):
    """Unequal lengths in one padded batch: H is X^T X of the unpadded rows exactly."""
    model = ta.load_model(str(folders["bert"])).model
    tok = transformers.AutoTokenizer.from_pretrained(folders["bert"])
    batch = dict(tok(["a long first sentence here", "short"], padding=True, return_tensors="pt"))
    mask = batch["attention_mask"]
    assert mask.sum() < mask.numel()  # there is padding
    name = "encoder.layer.0.attention.self.query"
    cap = ta.capture(model, [batch], names=[name])
    X = torch.cat(list(_hooked_rows(model, [batch], name))).numpy()
    assert cap.n_samples[name] == int(mask.sum()) == X.shape[0]
    tol = 16 * X.shape[0] * _EPS64 * float(np.max(np.abs(X)) ** 2)
    assert np.max(np.abs(cap.H[name] - X.T @ X)) <= tol
    # each sentence alone, unpadded: the same H up to float32 forward noise
    alone = [dict(tok([s], return_tensors="pt")) for s in ("a long first sentence here", "short")]
    H_alone = ta.capture(model, alone, names=[name]).H[name]
    assert np.max(np.abs(cap.H[name] - H_alone)) <= 1e3 * _EPS32 * np.abs(H_alone).max()
    # negative case: counting the padded positions changes H
    X_all = torch.cat([o for o in _all_rows(model, batch, name)]).numpy()
    assert np.max(np.abs(X_all.T @ X_all - cap.H[name])) > 1e3 * tol


def _all_rows(model, batch, name):
    seen = []
    h = ta.linear_layers(model)[name].register_forward_hook(lambda m, a, o: seen.append(a[0].double()))
    with torch.no_grad():
        model(**batch)
    h.remove()
    yield seen[0].reshape(-1, seen[0].shape[-1])


@pytest.mark.parametrize("arch", ARCHS)
def test_model_error_end_to_end_and_allocation(arch, folders, tmp_path, capsys):
    common = ["--model", str(folders[arch]), "--sequences", "4", "--seq-len", "12", "--no-progress"]
    if arch != "vit":
        common += ["--text", str(folders["text"])]
    assert cli.main(["model-error", *common, "--method", "gptq", "--bits", "4", "--heldout", "12"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["layers"] > 0 and res["neighbours"] == 10 and 0 <= res["neighbour_overlap"] <= 1
    causal = arch in ("gpt2", "llama")
    assert (res["perplexity_before"] is not None) == causal
    if causal:  # a random model: this only proves the path
        assert res["perplexity_before"] > 1 and res["perplexity_after"] > 1
    out = tmp_path / "layers"
    assert cli.main(["extract", *common, "--out", str(out)]) == 0
    capsys.readouterr()
    alloc = tmp_path / "alloc.json"
    assert cli.main(["allocate", str(out), "--budget", "12", "--bits", "2,4", "--ranks", "0,2",
                     "--by", "bound", "--out", str(alloc), "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["effective_bits"] <= 12
    assert cli.main(["model-error", *common, "--method", "gilora", "--allocation", str(alloc),
                     "--heldout", "12"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["effective_bits"] == pytest.approx(doc["effective_bits"], rel=1e-12)


def test_bad_model_folder_and_allocation_are_one_line_errors(tmp_path, capsys, folders):
    assert cli.main(["extract", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "config.json" in capsys.readouterr().err
    bad = tmp_path / "alloc.json"
    bad.write_text("{}")
    assert cli.main(["model-error", "--model", str(folders["vit"]), "--method", "gptq",
                     "--allocation", str(bad), "--sequences", "2", "--seq-len", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "allocation" in err


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_perplexity_matches_the_models_own_loss(arch, folders):
    """Independent route: transformers' shifted cross-entropy (``labels=input_ids``), one batch."""
    loaded = ta.load_model(str(folders[arch]))
    batch = ta.model_batches(loaded, sequences=3, seq_len=12, batch_size=3, text=_TEXT)[0]
    with torch.no_grad():
        loss = loaded.model(**batch, labels=batch["input_ids"]).loss.double()
    ppl = ta.perplexity_of(loaded.model, [batch])
    assert ppl == pytest.approx(float(torch.exp(loss)), rel=64 * _EPS32)
    padded = dict(batch, attention_mask=batch["attention_mask"].clone())
    padded["attention_mask"][0, 6:] = 0  # masked positions leave the average: it changes
    assert ta.perplexity_of(loaded.model, [padded]) != ppl


def test_c16_model_metrics_path_on_a_tiny_bert(folders):
    """C16's model-level step (compress, merge, output shift) on a tiny model: 16 bits barely
    move the outputs, 2 bits move them more."""
    from gilora_theory.experiments import paper
    loaded = ta.load_model(str(folders["bert"]))
    calib = ta.model_batches(loaded, sequences=4, seq_len=12, text=_TEXT)
    held = ta.model_batches(loaded, sequences=12, seq_len=12, part="heldout", text=_TEXT)
    layers = ta.layers_from_capture(loaded.model, ta.capture(loaded.model, calib))
    live = (ta, loaded.model, held, ta.hidden_states(loaded.model, held))
    fine = paper._c16_model_metrics(live, layers, [(16, 0)] * len(layers), {})
    coarse = paper._c16_model_metrics(live, layers, [(2, 0)] * len(layers), {})
    assert fine["hidden_relative_error"] < 1e-6 < coarse["hidden_relative_error"]
    assert fine["neighbour_overlap"] == 1.0 and 0 <= coarse["neighbour_overlap"] <= 1
