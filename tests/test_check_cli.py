"""``gilora-theory check``: the main job's verdict table, reports, figures and exit status."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gilora_theory import cli
from gilora_theory.experiments import paper

CLAIMS = [f"C{i}" for i in range(1, 15)] + ["C16"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``check --quick`` in its own process (live model skipped to keep the test short)."""
    out = tmp_path_factory.mktemp("check") / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "gilora_theory.cli", "check", "--quick", "--no-live",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    return proc, out


def test_quick_check_prints_one_verdict_per_claim(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"^(PASS|FAIL|REPORT) +C\d+ ", ln)]
    assert [ln.split()[1] for ln in lines] == CLAIMS
    assert all(re.search(r"\d", ln.split(":", 1)[1]) for ln in lines)  # every verdict carries numbers
    assert f"{len(CLAIMS)} claims: {len(CLAIMS)} hold, 0 fail" in proc.stdout
    assert "claims" in proc.stderr or "claim" in proc.stderr  # the tqdm progress bar


def test_quick_check_writes_both_reports(quick_run):
    _, out = quick_run
    report = json.loads((out / "report.json").read_text())
    assert [k for k in report if k != "meta"] == CLAIMS
    for cid in CLAIMS:
        assert report[cid]["verdict"] in ("PASS", "REPORT")
        assert report[cid]["metrics"] and report[cid]["summary"]
    assert report["meta"]["mode"] == "quick" and report["meta"]["exit_status"] == 0
    assert report["meta"]["threads"] == 1
    assert any("real layers" in s for s in report["meta"]["data"])
    prov = report["meta"]["provenance"]
    import gilora_theory
    import numpy as np
    assert prov["gilora_theory"] == gilora_theory.__version__ and prov["numpy"] == np.__version__
    assert {"git_commit", "python", "scipy", "blas", "threads", "seeds", "data_hashes"} <= set(prov)
    assert prov["seeds"] == [0] and prov["data_hashes"]          # the real layers' hashes
    md = (out / "report.md").read_text()
    for cid in CLAIMS:
        assert f"| {cid} | **" in md and f"## {cid} " in md


def test_quick_check_writes_the_figures(quick_run):
    _, out = quick_run
    md = (out / "report.md").read_text()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == ["allocation.png", "bound_chain.png", "bound_scaling.png", "method_comparison.png",
                       "rank_benefit.png", "refinement_traces.png"]
    for name in figures:
        assert f"(figures/{name})" in md
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["--claims", "C99"], "unknown claim id"),
    (["--seed", "-1"], "seed must be"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_input_exits_2_without_files(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    status = cli.main(["check", "--quick", "--no-live", "--no-progress", "--out", str(out)] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0]
    assert not (out / "report.json").exists() and not (out / "report.md").exists()


def test_out_must_be_a_folder(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert cli.main(["check", "--quick", "--no-live", "--out", str(path), "--claims", "C1"]) == 2
    assert "out must be a folder" in capsys.readouterr().err


def test_failing_claim_exits_1_and_is_reported(tmp_path, capsys, monkeypatch):
    def broken(data):
        return paper.ClaimResult("C1", "GILoRA(r=0) == GPTQ", "FAIL", "Q differs in 3 of 10 entries",
                                 {"mismatched_entries": 3})
    monkeypatch.setitem(paper.CLAIMS, "C1", broken)
    status = cli.main(["check", "--quick", "--no-live", "--no-progress", "--claims", "C1,C10",
                       "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL     C1     GILoRA(r=0) == GPTQ: Q differs in 3 of 10 entries" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["C1"]["verdict"] == "FAIL" and report["C10"]["verdict"] == "PASS"
    assert report["meta"]["exit_status"] == 1


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_out_fails_before_any_claim_runs(tmp_path, capsys, monkeypatch, where):
    """The folder is probed first: no claim (minutes of work) runs before exit 2."""
    def never(*args, **kwargs):
        raise AssertionError("the claims ran although out cannot be written")
    monkeypatch.setattr(paper, "default_data", never)
    if where == "under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:
        out = Path("/proc/gilora-theory-check-out")      # not writable, even for root
    status = cli.main(["check", "--quick", "--no-live", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "out must be a writable folder" in err[0]
    assert not out.exists()


def test_version_prints_the_package_version():
    import gilora_theory
    proc = subprocess.run([sys.executable, "-m", "gilora_theory.cli", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"gilora-theory {gilora_theory.__version__}"


def test_limited_threads_limits_and_restores():
    """``check``'s thread limit reaches every loaded BLAS library and torch, and is undone."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from gilora_theory.experiments.report import limited_threads
    torch = sys.modules.get("torch")

    def blas():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"]
    before, torch_before = blas(), torch.get_num_threads() if torch else None
    assert before
    with limited_threads(1):
        assert set(blas()) == {1}
        assert torch is None or torch.get_num_threads() == 1
    assert blas() == before
    assert torch is None or torch.get_num_threads() == torch_before
