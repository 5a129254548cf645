"""Tests of gilora_theory.storage: effective bits per weight, checked against hand counts."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gilora_theory import fit_grid
from gilora_theory.branch import quantize_branch
from gilora_theory.storage import storage, storage_of
from gilora_theory.testing.budget import scaled


def test_hand_count_docstring_example():
    # W 4 x 3, Q at 2 bits, one grid per column: codes 4*3*2 = 24, grid 3 columns * (16 + 16) = 96.
    # L 4 x 1 at 4 bits: 4*1*4 = 16 codes + one grid (16 + 16) = 32 -> 48.
    # R 1 x 3 at 8 bits, one grid per row: 1*3*8 = 24 codes + 1 * 32 = 32 -> 56.
    # Total 24 + 96 + 48 + 56 = 224 bits over 12 weights = 18.666... bits per weight.
    s = storage(4, 3, bits=2, rank=1, l_bits=4, r_bits=8)
    assert (s.q_codes, s.q_grid, s.l_codes, s.l_grid, s.r_codes, s.r_grid) == (24, 96, 16, 32, 24, 32)
    assert s.total == 224 and s.branch == 104
    assert s.effective_bits == 224 / 12


def test_hand_count_full_precision_branch_and_groups():
    # W 10 x 2 at 3 bits, groups of 4 rows -> ceil(10 / 4) = 3 groups: grid 3 * 2 * (8 + 8) = 96
    # with 8-bit parameters; codes 10*2*3 = 60. Branch r = 2 at full precision (32-bit):
    # L 10*2*32 = 640, R 2*2*32 = 128, no grids. Total 60 + 96 + 640 + 128 = 924 over 20 weights.
    s = storage(10, 2, bits=3, rank=2, groupsize=4, param_bits=8, full_precision_bits=32)
    assert (s.q_codes, s.q_grid, s.l_codes, s.l_grid, s.r_codes, s.r_grid) == (60, 96, 640, 0, 128, 0)
    assert s.effective_bits == 924 / 20


def test_hand_count_column_axis_of_R():
    # W 6 x 5 at 4 bits: 120 + 5 * 32 = 160. r = 2, L fp16: 6*2*16 = 192.
    # R at 2 bits with one grid per output column: 2*5*2 = 20 codes + 5 * 32 = 160 grid bits.
    s = storage(6, 5, bits=4, rank=2, r_bits=2, r_axis="column")
    assert (s.q_codes, s.q_grid, s.l_codes, s.l_grid, s.r_codes, s.r_grid) == (120, 160, 192, 0, 20, 160)
    assert s.total == 652


def test_rank_zero_costs_only_Q():
    # 8 x 8 at 4 bits: 256 codes + 8 * 32 grid bits = 512 bits over 64 weights = 8 bits per weight.
    s = storage(8, 8, bits=4, l_bits=4, r_bits=4)
    assert s.branch == 0 and s.effective_bits == 8.0


def test_large_layer_approaches_the_code_width():
    # 4096 x 4096 at 2 bits: 2 + 32 / 4096 bits per weight for Q; the rank-1 branch adds
    # (4096*4 + 32 + 4096*8 + 32) / 4096^2.
    s = storage(4096, 4096, bits=2, rank=1, l_bits=4, r_bits=8)
    assert s.effective_bits == 2 + 32 / 4096 + (4096 * 12 + 64) / 4096 ** 2


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.sampled_from([None, 2, 3]),
       st.sampled_from([None, 2, 4, 8]), st.sampled_from([None, 3, 6]),
       st.sampled_from(["row", "column"]))
@settings(max_examples=scaled(30))
def test_formula_matches_a_count_of_the_stored_arrays(seed, bits, groupsize, l_bits, r_bits, r_axis):
    """Independent route: count entries of the actual grid and factor arrays."""
    rng = np.random.default_rng(seed)
    N, N_out = (int(x) for x in rng.integers(1, 9, size=2))
    r = int(rng.integers(0, min(N, N_out) + 1))
    W = rng.standard_normal((N, N_out))
    grid = fit_grid(W, bits, groupsize=None if groupsize is None else min(groupsize, N))
    branch = quantize_branch(rng.standard_normal((N, r)), rng.standard_normal((r, N_out)),
                             l_bits=l_bits, r_bits=r_bits, r_axis=r_axis)
    counted = storage_of(grid, N, branch)
    formula = storage(N, N_out, bits=bits, rank=r, groupsize=grid.groupsize, l_bits=l_bits,
                      r_bits=r_bits, r_axis=r_axis)
    assert counted == formula


def test_no_branch_and_negative_cases():
    W = np.random.default_rng(0).standard_normal((5, 3))
    assert storage_of(fit_grid(W, 2), 5) == storage(5, 3, bits=2)
    # Negative case: a quantized branch is not free - it must cost more than no branch at all.
    qb = quantize_branch(np.ones((5, 1)), np.ones((1, 3)), l_bits=2, r_bits=2)
    assert storage_of(fit_grid(W, 2), 5, qb).total > storage(5, 3, bits=2).total
    with pytest.raises(ValueError, match="unbounded"):
        storage_of(fit_grid(W, 2, bounded=False), 5)
    with pytest.raises(TypeError, match="grid"):
        storage_of(W, 5)
    with pytest.raises(TypeError, match="branch"):
        storage_of(fit_grid(W, 2), 5, (W, W))
    with pytest.raises(ValueError, match="rank"):
        storage(5, 3, bits=2, rank=4)
    with pytest.raises(ValueError, match="r_axis"):
        storage(5, 3, bits=2, rank=1, r_axis="diag")
    with pytest.raises(ValueError, match="param_bits"):
        storage(5, 3, bits=2, param_bits=0)
    with pytest.raises(ValueError, match="l_bits"):
        storage(5, 3, bits=2, l_bits=17)


def test_compression_storage_and_the_run_command(tmp_path, capsys):
    import json

    from gilora_theory import compress
    from gilora_theory.cli import main
    from gilora_theory.data.io import save_layer
    from gilora_theory.storage import compression_storage

    rng = np.random.default_rng(3)
    X, W = rng.standard_normal((40, 8)), rng.standard_normal((8, 6))
    path = tmp_path / "layer.npz"
    save_layer(path, W, X=X)
    argv = ["run", str(path), "--method", "gilora", "--bits", "3", "--rank", "2",
            "--l-bits", "4", "--r-bits", "6", "--out", str(tmp_path / "out.npz")]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    # Hand count: Q 8*6*3 = 144 + 6 * 32 = 192 -> 336; L 8*2*4 = 64 + 2 * 32 = 64 -> 128;
    # R 2*6*6 = 72 + 2 * 32 = 64 -> 136. Total 600 bits over 48 weights = 12.5 bits per weight.
    assert out["effective_bits"] == 600 / 48
    assert out["l_bits"] == 4 and out["r_bits"] == 6 and out["branch_order"] == "before"
    c = compress(W, X.T @ X, "gilora", 3, 2, l_bits=4, r_bits=6)
    assert out["error"] == c.objective.error
    assert compression_storage(c).total == 600
    # Default: full-precision (16-bit) branch: 336 + 8*2*16 + 2*6*16 = 336 + 256 + 192 = 784.
    assert main(argv[:8] + ["--out", str(tmp_path / "o2.npz")]) == 0
    assert json.loads(capsys.readouterr().out)["effective_bits"] == 784 / 48
    assert main(argv[:8] + ["--l-bits", "0", "--out", str(tmp_path / "o3.npz")]) == 2
    assert "--l-bits" in capsys.readouterr().err          # the flag as typed (issue 14)
    assert not (tmp_path / "o3.npz").exists()


# --- the equal-storage table ------------------------------------------------------------

def test_table_rows_are_the_arithmetic_of_compress():
    from gilora_theory import compress
    from gilora_theory.experiments.equal_storage import storage_table
    from gilora_theory.data.io import Layer
    from gilora_theory.storage import compression_storage

    rng = np.random.default_rng(5)
    X, W = rng.standard_normal((30, 10)) * np.linspace(2, 0.2, 10), rng.standard_normal((10, 7))
    H = X.T @ X
    table = storage_table([Layer(W, H, name="t")], bits=(3,), ranks=(2,), branch_bits=(None, 4),
                          plain_bits=(3,), source="unit")
    assert set(table["method"]) == {"rtn", "gptq", "gptq+olrc", "gilora", "refine", "gptq+svd",
                                    "rtn+svd", "rtn+qera-approx", "rtn+qera-exact", "gptq+eora",
                                    "loftq", "caldera", "rtn+loraq"}   # no x_abs_mean: no LQER
    for method in ("gptq+olrc", "gilora", "refine"):
        for bb in (None, 4):
            c = compress(W, H, method, 3, 2, l_bits=bb, r_bits=bb)
            row = table[(table["method"] == method) & (table["branch_bits"].isna() if bb is None
                                                       else table["branch_bits"] == bb)]
            assert len(row) == 1
            assert row["error"].item() == c.objective.error
            assert row["effective_bits"].item() == compression_storage(c).effective_bits
    c = compress(W, H, "gptq", 3)
    assert table.loc[table["method"] == "gptq", "error"].item() == c.objective.error
    # Hand count for the 4-bit branch rows: Q 10*7*3 = 210 + 7*32 = 224 -> 434;
    # L 10*2*4 = 80 + 2*32 = 64 -> 144; R 2*7*4 = 56 + 2*32 = 64 -> 120. 698 bits / 70 weights.
    q4 = table[table["branch_bits"] == 4]
    assert np.all(q4["effective_bits"] == 698 / 70)
    assert table["relative_error"].notna().all() and (table["effective_bits"] > 0).all()


def test_winners_on_a_hand_made_table():
    import pandas as pd

    from gilora_theory.experiments.equal_storage import storage_winners

    t = pd.DataFrame(dict(
        source="s", layer="a",
        method=["gptq", "gptq", "gilora", "gptq+olrc"],
        bits=[2, 3, 2, 2], rank=[0, 0, 4, 4], branch=["fp"] * 4,
        effective_bits=[2.1, 3.1, 2.6, 2.6], relative_error=[0.30, 0.10, 0.15, 0.20]))
    w = storage_winners(t, [2.0, 2.5, 3.0, 3.5])
    # Budget 2.0: nothing affordable (no row). 2.5: only 2-bit GPTQ. 3.0: GILoRA (0.15) over
    # GPTQ+OLrC (0.20), margin 4/3. 3.5: 3-bit GPTQ (0.10) beats GILoRA (0.15).
    assert list(w["budget"]) == [2.5, 3.0, 3.5]
    assert list(w["method"]) == ["gptq", "gilora", "gptq"]
    assert pd.isna(w["runner_up"].iloc[0]) and np.isnan(w["margin"].iloc[0])
    assert w["margin"].iloc[1] == pytest.approx(0.20 / 0.15)
    assert list(w["best_gptq"]) == [0.30, 0.30, 0.10]


def test_error_vs_effective_bits_figure():
    import pandas as pd

    from gilora_theory.experiments.plotting import plot_error_vs_effective_bits

    t = pd.DataFrame(dict(
        source="s", layer=["a"] * 3 + ["b"] * 3, N=8, N_out=4,
        method=["gptq", "gilora", "rtn+svd"] * 2, branch=["fp", "4-bit", "fp"] * 2,
        effective_bits=[2.5, 3.0, 20.0] * 2, relative_error=[0.3, 0.2, 0.1] * 2))
    fig = plot_error_vs_effective_bits(t, xmax=9.0)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    assert axes[0].get_yscale() == "log" and "bits per weight" in axes[0].get_xlabel()
    # The 20-bit point is beyond xmax: only two methods are drawn per panel (+ the envelope).
    assert len(axes[0].collections) == 2
