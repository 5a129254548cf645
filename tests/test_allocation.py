"""Bit/rank allocation: exact knapsack against brute force, budgets recounted, cache resumes."""
import itertools
import json

import numpy as np
import pytest

from gilora_theory.data.layers import synthetic_layers
from gilora_theory.experiments import allocation as al
from gilora_theory.methods import compress
from gilora_theory.storage import storage
from gilora_theory.upper_bounds import factorised_bound

BITS, RANKS = (2, 3, 4), (0, 1, 2)


@pytest.fixture(scope="module")
def toy():
    """Three small layers of different shapes and spectra."""
    out = []
    for seed, (kind, N, M) in enumerate((("isotropic", 16, 12), ("power_law", 20, 10), ("outliers", 12, 18))):
        out += synthetic_layers((kind,), m=3 * N, N=N, N_out=M, rng=seed)
    return out


@pytest.fixture(scope="module")
def measured(toy):
    return al.error_surface(toy, by="measured", bits=BITS, ranks=RANKS)


def _brute_force(surface, budget):
    """Every combination of candidates: the least summed error within the exact bit budget."""
    cap = budget * surface.n_weights
    best = (np.inf, None)
    for combo in itertools.product(range(len(surface.candidates)), repeat=len(surface.names)):
        cost = sum(int(surface.cost[l, k]) for l, k in enumerate(combo))
        err = sum(surface.error[l, k] for l, k in enumerate(combo))
        if cost <= cap and err < best[0]:
            best = (err, combo)
    return best


@pytest.mark.parametrize("budget", [4.5, 5.5, 6.5, 8.0, 10.0])
def test_measured_allocation_equals_brute_force_on_three_layers(measured, budget):
    best, combo = _brute_force(measured, budget)
    a = al.solve(measured, budget, resolution=1)
    scale = np.abs(measured.error).max() * len(measured.names)
    assert a.predicted_error == pytest.approx(best, abs=8 * np.finfo(float).eps * scale)
    assert a.gap == 0.0 and a.lower_bound == pytest.approx(a.predicted_error)
    assert a.bits_total <= budget * measured.n_weights


def test_budget_is_respected_when_recounted_from_storage(toy, measured):
    for budget in (4.5, 6.5, 8.0):
        for res in (1, 7, 64):
            a = al.solve(measured, budget, resolution=res)
            recount = sum(storage(*np.shape(lay.W), bits=b, rank=r).total
                          for lay, (b, r) in zip(toy, a.choice))
            assert recount == a.bits_total <= budget * measured.n_weights
            # the gap is proven: the exact optimum lies between the bound and the value
            best, _ = _brute_force(measured, budget)
            assert a.lower_bound <= best * (1 + 1e-12) and best <= a.predicted_error * (1 + 1e-12)


def test_coarse_resolution_can_miss_the_optimum_and_says_so(measured):
    """A broken solver that ignores rounding is caught: the gap must bracket the optimum."""
    gaps = [al.solve(measured, 6.5, resolution=res).gap for res in (1, 97)]
    assert gaps[0] == 0.0
    best, _ = _brute_force(measured, 6.5)
    coarse = al.solve(measured, 6.5, resolution=97)
    assert coarse.predicted_error >= best and coarse.lower_bound <= best


def test_a_greedy_allocator_is_beaten_by_the_knapsack(measured):
    """Negative case: picking per layer the best error per bit is not optimal here (or equal)."""
    budget = 6.5
    a = al.solve(measured, budget, resolution=1)
    greedy = [int(np.argmin(measured.cost[l])) for l in range(len(measured.names))]
    cap = budget * measured.n_weights
    err = lambda c: sum(measured.error[l, k] for l, k in enumerate(c))  # noqa: E731
    cost = lambda c: sum(measured.cost[l, k] for l, k in enumerate(c))  # noqa: E731
    improved = True
    while improved:
        improved = False
        for l in range(len(greedy)):
            for k in np.argsort(measured.error[l]):
                trial = greedy[:l] + [int(k)] + greedy[l + 1:]
                if cost(trial) <= cap and err(trial) < err(greedy):
                    greedy, improved = trial, True
    assert a.predicted_error <= err(greedy) * (1 + 1e-12)


def test_bound_surface_is_g_times_h(toy):
    s = al.error_surface(toy, by="bound", bits=BITS, ranks=RANKS)
    lay = toy[1]
    for k, (b, r) in enumerate(s.candidates):
        fb = factorised_bound(lay.W, lay.H, b, damp_from="augmented")
        assert s.error[1, k] == pytest.approx(fb.g * fb.h[min(r, *lay.W.shape)], rel=1e-12)


def test_measured_surface_is_compress_error_and_cache_resumes(toy, tmp_path, monkeypatch):
    s = al.error_surface(toy, by="measured", bits=(3,), ranks=(0, 2), cache=tmp_path)
    ref = compress(toy[0].W, toy[0].H, "gilora", 3, 2).objective.error
    assert s.error[0, 1] == ref
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 3 and json.loads(files[0].read_text())["errors"]
    calls = []
    monkeypatch.setattr(al, "compress", lambda *a, **k: calls.append(a) or compress(*a, **k))
    again = al.error_surface(toy, by="measured", bits=(3,), ranks=(0, 2), cache=tmp_path)
    assert calls == [] and np.array_equal(again.error, s.error)
    more = al.error_surface(toy, by="measured", bits=(3, 4), ranks=(0, 2), cache=tmp_path)
    assert len(calls) == 6 and np.array_equal(more.error[:, :2], s.error)


def test_on_compression_hands_over_each_run_once(toy, tmp_path):
    """Each compression the measured surface runs reaches ``on_compression`` once, with the
    candidate as given (rank 40 stays 40, capped only for ``compress``) and the very run whose
    error enters the surface; entries read from the cache are not handed over."""
    seen = {}
    s = al.error_surface(toy, by="measured", bits=(3,), ranks=(0, 40), cache=tmp_path,
                         on_compression=lambda name, b, r, made: seen.setdefault((name, b, r), made))
    assert sorted(seen) == sorted((lay.name, 3, r) for lay in toy for r in (0, 40))
    for i, lay in enumerate(toy):
        for k, r in enumerate((0, 40)):
            made = seen[lay.name, 3, r]
            assert made.objective.error == s.error[i, k] and made.L.shape[1] == min(r, *lay.W.shape)
    again = []
    al.error_surface(toy, by="measured", bits=(3,), ranks=(0, 40), cache=tmp_path,
                     on_compression=lambda *a: again.append(a))
    assert again == []


def test_stale_cache_of_other_weights_is_not_reused(toy, tmp_path):
    al.error_surface(toy[:1], by="measured", bits=(3,), ranks=(0,), cache=tmp_path)
    path = next(tmp_path.glob("*.json"))
    entry = json.loads(path.read_text())
    entry["errors"]["3,0"] = 123.0
    path.write_text(json.dumps(dict(entry, key="other")))
    s = al.error_surface(toy[:1], by="measured", bits=(3,), ranks=(0,), cache=tmp_path)
    assert s.error[0, 0] != 123.0


def test_uniform_takes_the_most_bits_that_fit(toy, measured):
    u = al.uniform_choice(measured, 7.0)
    assert len(set(u.choice)) <= 2  # one (b, r); ranks may be capped per layer
    b, r = measured.candidates[max(k for k in range(len(measured.candidates))
                                   if measured.cost[:, k].sum() <= 7.0 * measured.n_weights)]
    assert {c[0] for c in u.choice} == {b}
    assert u.predicted_error >= al.solve(measured, 7.0).lower_bound
    assert u.bits_total <= 7.0 * measured.n_weights


def test_bad_input_is_refused(toy, measured):
    with pytest.raises(ValueError, match="budget must be at least"):
        al.solve(measured, 1.0)
    with pytest.raises(ValueError, match="budget"):
        al.solve(measured, -1.0)
    with pytest.raises(ValueError, match="by must be"):
        al.allocate(toy, 3.0, by="guess")
    with pytest.raises(ValueError, match="bits"):
        al.error_surface(toy, bits=(0,))
    with pytest.raises(ValueError, match="at least one"):
        al.error_surface(toy, ranks=())


def test_allocation_json_round_trips_the_choice(toy, measured):
    a = al.solve(measured, 7.0)
    doc = json.loads(json.dumps(al.allocation_json(a, measured.shapes)))
    assert [tuple(v[k] for k in ("bits", "rank")) for v in doc["layers"].values()] == list(a.choice)


@pytest.fixture(scope="module")
def c16_data():
    from gilora_theory.experiments.paper import PaperData
    layers = tuple(synthetic_layers(("power_law", "outliers", "isotropic"), m=96, N=64, N_out=48, rng=3))
    return PaperData(layers, quick=True, seed=3)


def test_c16_reports_the_three_rules_within_budget(c16_data):
    from gilora_theory.experiments.paper import c16_allocation
    res = c16_allocation(c16_data, budgets=(3.0, 4.0, 5.0))
    assert res.verdict == "REPORT", res.summary
    df = res.table
    assert set(df.rule) == {"bound", "measured", "uniform"} and df.within_budget.all()
    E = df.pivot(index="budget", columns="rule", values="layer_error_sum")
    assert (E["measured"] <= E[["bound", "uniform"]].min(axis=1) * (1 + 1e-12)).all()
    assert res.metrics["median_h_ratio"] is not None and "recovered" in res.summary


def test_c16_fails_a_solver_that_ignores_the_budget(c16_data):
    from gilora_theory.experiments.paper import c16_allocation
    res = c16_allocation(c16_data, budgets=(3.0, 4.0), solve_fn=lambda s, B: al.solve(s, 2 * B))
    assert res.verdict == "FAIL" and res.metrics["over_budget"] > 0


def test_c16_fails_a_solver_that_is_not_optimal(c16_data):
    """A 'solver' answering with the uniform choice is beaten by the bound rule or caught."""
    from gilora_theory.experiments.paper import c16_allocation

    def lazy(surface, B):
        u = al.uniform_choice(surface, B)
        return u if surface.kind == "measured" else al.solve(surface, B)
    res = c16_allocation(c16_data, budgets=(3.0, 4.0, 5.0), solve_fn=lazy)
    assert res.verdict == "FAIL" and res.metrics["measured_beaten"] > 0


@pytest.mark.parametrize("keep_bytes", [None, 0])
def test_c16_runs_one_model_forward_per_distinct_allocation(c16_data, monkeypatch, keep_bytes):
    """Rules (and budgets) that choose the same allocation share one held-out forward, every
    row carries the metrics of its own allocation (tied to the row by its recounted bits).
    Small models: every candidate's merged weights come from the measured surface's own
    compressions (none is compressed again). Beyond ``_C16_KEEP_BYTES``: merged weights are
    kept only for the current budget's allocations."""
    from gilora_theory.experiments import paper
    if keep_bytes is not None:
        monkeypatch.setattr(paper, "_C16_KEEP_BYTES", keep_bytes)
    calls, kept, missing, first = [], [], [], {}

    def fake_metrics(live, layers, choice, merged):
        assert live == "model"
        kept.append(len(merged))
        first.update({} if first else {k: v for k, v in merged.items() if v is not None})
        calls.append(tuple(map(tuple, choice)))
        missing.extend(k for k in ((lay.name, *c) for lay, c in zip(layers, choice)) if k not in merged)
        merged.update({(lay.name, *c): None for lay, c in zip(layers, choice)})
        return {"hidden_relative_error": float(len(calls))}
    monkeypatch.setattr(paper, "_c16_layers", lambda data: (data.layers, "model"))
    monkeypatch.setattr(paper, "_c16_model_metrics", fake_metrics)
    res = paper.c16_allocation(c16_data, budgets=(3.0, 3.5, 4.0, 5.0))
    df = res.table
    assert len(calls) == len(set(calls)) < len(df)    # the uniform rule repeats itself here
    shapes = [lay.W.shape for lay in c16_data.layers]
    n_weights = sum(a * b for a, b in shapes)
    for bits, k in zip(df.effective_bits, df.hidden_relative_error):
        assert al.recount_bits(shapes, calls[int(k) - 1]) / n_weights == bits
    if keep_bytes is None:
        assert missing == [] and set(kept) == {len(c16_data.layers) * 3 * 2}   # bits 2-4, ranks 0, 16
        lay = c16_data.layers[-1]                    # kept = what compressing again would give
        assert np.array_equal(first[lay.name, 3, 16],
                              paper._merged(compress(lay.W, lay.H, "gilora", 3, 16)))
    else:
        assert missing and max(kept) <= 3 * len(c16_data.layers)


def test_allocation_figure_draws_one_line_per_rule(c16_data):
    from gilora_theory.experiments.paper import c16_allocation
    from gilora_theory.experiments.plotting import plot_allocation
    res = c16_allocation(c16_data, budgets=(3.0, 4.0))
    fig = plot_allocation(res.figure_data)
    assert len(fig.axes[0].get_lines()) == 3


def test_allocate_measured_end_to_end_equals_brute_force(toy, measured):
    budget = 6.5
    a = al.allocate(toy, budget, by="measured", bits=BITS, ranks=RANKS, resolution=1)
    best, combo = _brute_force(measured, budget)
    assert a.predicted_error == pytest.approx(best, rel=1e-12)
    assert al.surface_error(measured, a.choice) == a.predicted_error  # ties may pick another combo
