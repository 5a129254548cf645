"""The benchmark runs end to end on a tiny layer, and its fast routes agree with dense ones.

No timing is asserted (the machine is shared); the benchmark's numbers are
printed by ``python benchmarks/bench.py`` and recorded in the README.
"""
import json

import numpy as np
import pytest
import scipy.linalg

from gilora_theory import gptq, olrc
from gilora_theory._krylov import top_eigenpairs
from gilora_theory.gilora import top_eigenvectors

from _bench import load as _load_bench  # noqa: E402

bench = _load_bench()

EPS = np.finfo(np.float64).eps


def test_smoke_run_writes_table_figure_and_results(tmp_path, capsys):
    status = bench.main(["--N", "64", "--rank", "4", "--repeats", "1", "--naive-n", "64",
                         "--sizes", "32", "64", "--skip", "sweep", "--out", str(tmp_path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "flop rate" in out and "row-by-row" in out and "targets met:" in out
    assert "gptq+olrc" in out and "randomized-SVD" in out and "exceeds the exact optimum" in out
    assert "gilora-theory run --method gptq (new process)" in out
    assert out.count("its required parts alone / gptq() public") == 3
    res = json.loads((tmp_path / "bench_results.json").read_text())
    names = [t["name"] for t in res["targets"]]
    assert any("peak RSS" in n for n in names) and any("exact r=1" in n for n in names)
    assert all(np.isfinite(t["ratio"]) and t["ratio"] > 0 for t in res["targets"])
    assert (tmp_path / "bench_scaling.png").stat().st_size > 0
    table = (tmp_path / "bench_scaling.csv").read_text().splitlines()
    assert table[0] == "algorithm,N,seconds,fitted_exponent" and len(table) == 1 + 2 * 6


def test_size_targets_grade_olrc_at_1024_and_2048_only():
    """Target 3 at the scaling table's 1024 and 2048 (not at the main size, not at 512):
    OLrC given Q and gptq+olrc against the same size's public gptq(), limit 2."""
    t = {"olrc_given_q_public": 3.0, "gptq_olrc_public": 5.0, "gptq_public": 2.0}
    out = bench.size_targets({512: t, 1024: t, 2048: t, 4096: t}, 4096, 32)
    assert [x.name for x in out] == [
        "OLrC r=32 given Q / GPTQ (public calls) at 1024",
        "compress gptq+olrc r=32 / GPTQ (public calls) at 1024",
        "OLrC r=32 given Q / GPTQ (public calls) at 2048",
        "compress gptq+olrc r=32 / GPTQ (public calls) at 2048"]
    assert [x.ratio for x in out] == [1.5, 2.5, 1.5, 2.5]
    assert [x.passed for x in out] == [True, False, True, False]
    assert bench.size_targets({1024: t}, 1024, 32) == []


def test_required_parts_are_summed_per_route_and_follow_their_targets():
    """Each route's parts (PARTS) summed within one repetition, the eigensolver counted by the
    faster of its two timings; size_targets puts the sum after each graded ratio."""
    t = {"gptq_public": 2.0, "validate": 0.5, "signal": 0.5, "startup": 0.25, "load": 0.25,
         "cholesky": 0.5, "trmm": 1.0, "gram": 1.0, "eig_route": 3.0, "eig_dense": 4.0,
         "cli_run": 5.0, "gptq_olrc_public": 8.0, "olrc_given_q_public": 6.0}
    t = bench._add_part_sums(dict(t))
    assert t["eig"] == 3.0
    assert t["cli_run_parts"] == 3.0 and t["gptq_olrc_public_parts"] == 6.5
    assert t["olrc_given_q_public_parts"] == 6.0
    out = bench.size_targets({1024: t}, 4096, 32)
    assert [x.sense for x in out] == ["<=", "info", "<=", "info"]
    assert [x.ratio for x in out] == [3.0, 3.0, 4.0, 3.25]
    assert "validate H 0.50 s + Cholesky 0.50 s + C^T D 1.00 s + Gram E^T E 1.00 s" in out[1].note
    assert out[3].note.startswith("gptq() + ||XW||^2 0.50 s")
    del t["load"]                                     # a route not fully timed gets no sum
    assert "cli_run_parts" not in bench._add_part_sums({k: v for k, v in t.items()
                                                        if not k.endswith("_parts")})


def test_the_two_olrc_routes_share_one_eigenproblem():
    """required_parts times one eigenproblem for both OLrC routes: the pass's E = Psi^{-1} (W - Q)
    and C^T (W - Q) (H_lam = C C^T) have the same singular values; a wrong damping does not."""
    layer = bench.make_layer(80, 48, bits=3, spectrum=False)
    res = gptq(layer.W, layer.H, layer.grid, lam=layer.lam)
    E = bench._run_keeping_factors(layer.W, layer.H, layer.grid, 80, lam=layer.lam,
                                   route="cholesky", blocksize=128, act_order=False,
                                   damp_policy="raise")[2]
    D = layer.W - res.Q

    def scaled(lam):
        return scipy.linalg.cholesky(layer.H + lam * np.eye(80), lower=True).T @ D

    a = np.linalg.svd(E, compute_uv=False)
    assert np.allclose(np.linalg.svd(scaled(layer.lam), compute_uv=False), a, rtol=1e-12, atol=0)
    assert not np.allclose(np.linalg.svd(scaled(2 * layer.lam), compute_uv=False), a, rtol=1e-6)
    times = bench.required_parts(layer, 8, res.Q)
    assert set(times) == {"validate", "signal", "cholesky", "trmm", "gram", "eig_route",
                          "eig_dense"}
    assert all(np.isfinite(v) and v >= 0 for v in times.values())


def test_row_by_row_loop_gives_the_blocked_q():
    layer = bench.make_layer(96, 40, bits=3, spectrum=False)
    H_lam = layer.H + layer.lam * np.eye(96)
    naive = bench.naive_gptq(layer.W, H_lam, layer.grid)
    for blocksize in (1, 5, 128):
        fast = gptq(layer.W, layer.H, layer.grid, lam=layer.lam, blocksize=blocksize)
        assert np.array_equal(naive, fast.Q)
    other = bench.make_layer(96, 40, bits=3, seed=5, spectrum=False)
    assert not np.array_equal(naive, bench.naive_gptq(other.W, H_lam, other.grid))


@pytest.fixture(scope="module")
def power_law_1024():
    return bench.make_layer(1024, 8, spectrum=False).H


def test_krylov_top_eigenvectors_match_the_dense_solver(power_law_1024):
    H, N, r = power_law_1024, 1024, 8
    e, V = scipy.linalg.eigh(H, subset_by_index=[N - r - 1, N - 1])
    e, V = e[::-1], V[:, ::-1]
    assert top_eigenpairs(lambda X: H @ X, N, r, max_blocks=10, max_products=40) is not None
    Vk = top_eigenvectors(H, r)                        # N >= 1024, 64 r <= N: the Krylov route
    gap = (e[r - 1] - e[r]) / e[0]
    tol = 64 * N * EPS / gap
    assert np.max(np.abs(Vk.T @ Vk - np.eye(r))) <= 64 * N * EPS
    assert np.max(np.linalg.norm(V[:, :r] @ (V[:, :r].T @ Vk) - Vk, axis=0)) <= tol
    assert np.all(np.abs(Vk).max(axis=0) == Vk.max(axis=0))     # sign convention
    # negative case: one block product cannot certify the pairs, so the caller falls back
    assert top_eigenpairs(lambda X: H @ X, N, r, max_blocks=10, max_products=1) is None


def test_partial_olrc_matches_the_full_svd():
    n, r = 1024, 8
    layer = bench.make_layer(n, n, bits=3)
    Q = gptq(layer.W, layer.H, layer.grid, lam=layer.lam).Q
    full = olrc(layer.W, Q, layer.H, r, lam=layer.lam, spectrum=layer.spec, svd="full")
    part = olrc(layer.W, Q, layer.H, r, lam=layer.lam, spectrum=layer.spec, svd="partial")
    a = full.singular_values
    assert part.singular_values.shape == (r,)          # the certified Krylov route was taken
    assert abs(part.value - full.value) <= 64 * n * EPS * full.value
    assert np.max(np.abs(part.singular_values - a[:r])) <= 64 * n * EPS * a[0]
    gap = (a[r - 1] ** 2 - a[r] ** 2) / a[0] ** 2
    M, Mp = full.L @ full.R, part.L @ part.R
    assert np.max(np.abs(M - Mp)) <= 64 * n * EPS / gap * np.max(np.abs(M))
    with pytest.raises(ValueError, match="svd must be one of"):
        olrc(layer.W, Q, layer.H, r, lam=layer.lam, spectrum=layer.spec, svd="randomized")


def test_llm_sized_layer_runner_on_a_tiny_shape():
    """The LLM-sized targets (issue 15, target 5) run end to end; tiny here, never timed."""
    targets = bench.llm_layers([(48, 16)], r=4)
    names = [t.name for t in targets]
    assert names[0].startswith("48x16 peak RSS") and len(targets) == 4
    assert all(np.isfinite(t.ratio) and t.ratio > 0 for t in targets)


def test_randomized_olrc_is_never_below_the_exact_optimum():
    layer = bench.make_layer(80, 60, bits=3, spectrum=False)
    Q = gptq(layer.W, layer.H, layer.grid, lam=layer.lam).Q
    exact = olrc(layer.W, Q, layer.H, 4, lam=layer.lam, svd="full").value
    approx = bench.randomized_olrc(layer.W, Q, layer.H, layer.lam, 4)
    assert approx >= exact * (1 - 64 * 80 * EPS)
    assert approx <= exact * 1.5                         # a sensible approximation


# ------------------------------------------- the README's table is the recorded run's

def _readme_disagreements(readme: str, results: dict) -> list[str]:
    """What in the README's Performance table differs from ``figures/bench_results.json``:
    the commit, the count of targets met, the verdicts and every targeted ratio."""
    perf = readme[readme.index("## Performance"):]
    table = perf[perf.index("| target | measured"):]
    table = table[:table.index("\n\n")]
    graded = [t for t in results["targets"] if t["sense"] != "info"]
    met = sum(t["passed"] for t in graded)
    problems = []
    commit = results["machine"]["provenance"]["git_commit"][:7]
    if f"at commit\n{commit}" not in perf and f"at commit {commit}" not in perf:
        problems.append(f"the README does not name the run's commit {commit}")
    if f"{met} of {len(graded)} targets met" not in perf:
        problems.append(f"the README does not say {met} of {len(graded)} targets met")
    verdicts = [row.rsplit("|", 2)[-2].strip() for row in table.splitlines()[2:]]
    if verdicts.count("PASS") != met or verdicts.count("FAIL") != len(graded) - met:
        problems.append(f"README verdicts {verdicts.count('PASS')} PASS / {verdicts.count('FAIL')} "
                        f"FAIL; the run: {met} / {len(graded) - met}")
    for t in graded:
        shown = f"{t['ratio']:.2f}" if t["ratio"] >= 0.1 else f"{t['ratio']:.3f}"
        if shown not in table:
            problems.append(f"{t['name']}: {shown} is not in the README's table")
    return problems


def test_readme_performance_table_is_the_recorded_run():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    results = json.loads((root / "figures" / "bench_results.json").read_text())
    assert _readme_disagreements(readme, results) == []
    # negative: one edited number, one flipped verdict
    graded = [t for t in results["targets"] if t["sense"] != "info"]
    first = f"{graded[0]['ratio']:.2f}"
    table = readme.index("| target | measured")
    edited = readme[:table] + readme[table:].replace(first, "9.99", 1)
    assert _readme_disagreements(edited, results)
    at = readme.index("| PASS |", readme.index("## Performance"))
    assert _readme_disagreements(readme[:at] + "| FAIL |" + readme[at + 8:], results)
