"""Run every paper check (C1..C14) and print the summary table.

Each ``cNN_*.py`` script runs in its own process (so each fixes its own seed
and reports its own exit status); this runner collects their verdict lines.

    python paper_checks/run_all.py [--quick]

Exit status 1 when any claim fails (or a script ends without a verdict line).
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: Path, quick: bool) -> tuple[str, float, int]:
    """The verdict line, the wall time and the exit status of one script."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script)] + (["--quick"] if quick else []),
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.split(" ", 1)[0] in ("PASS", "FAIL", "REPORT")]
    line = lines[-1] if lines else f"ERROR {script.stem}: no verdict line; " + \
        (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return line, time.perf_counter() - t0, proc.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small version of every check")
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("c[0-9][0-9]_*.py"))
    failed = 0
    print(f"{'verdict':<7}  {'claim':<5}  {'seconds':>7}  numbers")
    for script in scripts:
        line, seconds, status = run(script, args.quick)
        verdict, rest = line.split(" ", 1)
        claim, numbers = rest.split(" ", 1)
        failed += status != 0 or verdict not in ("PASS", "REPORT")
        print(f"{verdict:<7}  {claim:<5}  {seconds:7.1f}  {numbers}", flush=True)
    print(f"{len(scripts)} checks, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
