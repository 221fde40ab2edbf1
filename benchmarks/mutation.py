"""Mutation score of the pure modules ([tool.mutmut] in pyproject.toml names them and their fast tests).

Usage:
    python benchmarks/mutation.py [--work /tmp/depthforge-mutation] [--children 2]

Copies src/, tests/ and pyproject.toml into a scratch folder (mutmut writes its mutants/ beside them), runs
`mutmut run` there with one thread per test process (a forked child of a process whose OpenMP pool is running
hangs), reads every mutant's outcome, and prints and saves the score per module and each surviving mutant with
its diff and the reason it is kept (benchmarks/mutation_survivors.toml). A survivor without a reason is listed
as "unexplained" and makes the script exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REASONS = ROOT / "benchmarks" / "mutation_survivors.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/depthforge-mutation", help="scratch folder (replaced)")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="test processes at once")
    parser.add_argument("--report-only", action="store_true", help="report the last run in --work again")
    args = parser.parse_args()
    work = Path(args.work)
    if not args.report_only:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in ("src", "tests"):
            shutil.copytree(ROOT / name, work / name, ignore=ignore)
        shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        mutmut = Path(sys.executable).with_name("mutmut")
        start = time.perf_counter()
        run = subprocess.run([str(mutmut), "run", "--max-children", str(args.children)], cwd=work, env=env,
                             capture_output=True, text=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        # what the run was, so --report-only reports it and not the tree as it is later
        (work / "run.json").write_text(json.dumps({"commit": commit,
                                                   "minutes": round((time.perf_counter() - start) / 60, 1)}))
        if run.returncode:
            print(f"mutmut exit {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    made = json.loads((work / "run.json").read_text()) if (work / "run.json").exists() else {}
    outcomes, source_of = {}, {}
    for meta in sorted((work / "mutants" / "src").rglob("*.py.meta")):
        keys = json.loads(meta.read_text())["exit_code_by_key"]
        outcomes.update(keys)
        source_of.update({k: meta.relative_to(work / "mutants").with_suffix("") for k in keys})
    if not outcomes:
        sys.exit(f"mutmut made no mutants; see {work}")
    os.chdir(work)  # mutmut reads its mutants relative to the working folder
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code  # mutmut's own reading of a test run's exit code

    reasons = {}  # mutant -> why it survives ([[survivor]] tables: a reason and the mutants it covers)
    for entry in tomllib.loads(REASONS.read_text())["survivor"] if REASONS.exists() else []:
        for name in entry["mutants"]:
            reasons[name] = entry["reason"]
    rows, survivors = {}, []
    for name, code in outcomes.items():
        module = re.split(r"\.x[_\u01c1]", name)[0]  # mutmut names x_<function> and x\u01c1<class>\u01c1<method>
        status = status_by_exit_code[code]
        rows.setdefault(module, Counter())[status] += 1
        if status != "killed":
            diff = get_diff_for_mutant(name, path=source_of[name])
            changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
            survivors.append({"mutant": name, "status": status, "change": changed,
                              "reason": reasons.get(name, "unexplained")})

    table = ["| module | mutants | killed | survived | timeout | no tests | score |", "|---|---|---|---|---|---|---|"]
    total = Counter()
    for module, c in sorted(rows.items()):
        n = sum(c.values())
        total.update(c)
        table.append(f"| {module} | {n} | {c['killed']} | {c['survived']} | {c['timeout']} | {c['no tests']} "
                     f"| {100 * c['killed'] / n:.1f} % |")
    n = sum(total.values())
    table.append(f"| **all** | {n} | {total['killed']} | {total['survived']} | {total['timeout']} "
                 f"| {total['no tests']} | **{100 * total['killed'] / n:.1f} %** |")
    text = "\n".join(table)
    unexplained = [s for s in survivors if s["reason"] == "unexplained"]
    print(text)
    for s in survivors:
        print(f"\n{s['mutant']} ({s['status']}): {s['reason']}\n  " + "\n  ".join(s["change"]))
    summary = {"command": "python benchmarks/mutation.py", "commit": made.get("commit"), "minutes": made.get("minutes"),
               "mutants": n, "killed": total["killed"], "score": round(total["killed"] / n, 4),
               "unexplained": len(unexplained)}
    os.chdir(ROOT)
    save_results("mutation", text, summary, {"survivors": survivors})
    print(f"\n{json.dumps(summary)}")
    sys.exit(1 if unexplained else 0)


if __name__ == "__main__":
    main()
