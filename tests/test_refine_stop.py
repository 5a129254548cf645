"""refine stops when a round no longer lowers F (issue 14 item 7)."""
import json

import numpy as np
import pytest

import gilora_theory as gt
from gilora_theory import cli
from gilora_theory.data.io import save_layer


@pytest.fixture
def layer():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 40))
    return rng.standard_normal((40, 12)), X.T @ X


def test_stopping_early_gives_the_full_run_result(layer):
    W, H = layer
    full = gt.compress(W, H, "refine", 3, 2, rounds=40)
    early = gt.compress(W, H, "refine", 3, 2, rounds=40, stop_rtol=1e-12)
    n = early.info["rounds_run"]
    assert 1 <= n < 40 and len(early.trace) == 2 * n + 2
    np.testing.assert_array_equal(early.Q, full.Q)          # later rounds changed nothing
    assert early.objective.damped_error == full.objective.damped_error
    before, after = early.trace[2 * n - 2], early.trace[2 * n]   # F around the last round
    assert before - after <= 1e-12 * before
    np.testing.assert_array_equal(early.trace, full.trace[:2 * n + 1].tolist() + [early.trace[-1]])


def test_without_a_tolerance_every_round_runs(layer):
    W, H = layer
    res = gt.refine(W, H, gt.fit_grid(W, 3), gt.gptq(W, H, gt.fit_grid(W, 3)).Q, 2, rounds=7)
    assert res.rounds_run == 7
    huge = gt.refine(W, H, gt.fit_grid(W, 3), gt.gptq(W, H, gt.fit_grid(W, 3)).Q, 2, rounds=7,
                     stop_rtol=1.0)                     # any round "no longer lowers F" by 100%
    assert huge.rounds_run == 1


def test_bad_tolerance_is_refused(layer):
    W, H = layer
    g = gt.fit_grid(W, 3)
    with pytest.raises(ValueError, match="stop_rtol"):
        gt.refine(W, H, g, gt.gptq(W, H, g).Q, 2, stop_rtol=-1.0)


def test_cli_reports_the_rounds_run(layer, tmp_path, capsys):
    W, H = layer
    path = tmp_path / "L.npz"
    save_layer(path, W, H=H)
    assert cli.main(["run", str(path), "--method", "refine", "--bits", "3", "--rank", "2",
                     "--rounds", "100", "--out", str(tmp_path / "o.npz"), "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rounds"] == 100 and 1 <= out["rounds_run"] < 100
    assert len(out["trace"]) == 2 * out["rounds_run"] + 2
