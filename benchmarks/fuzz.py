"""Fuzz every reader of outside data at length: how many hostile inputs each was given, and what broke.

    python benchmarks/fuzz.py [--examples 10000] [--targets image,depth,...] [--seed 0]
    python benchmarks/fuzz.py --atheris image --seconds 300      # coverage-guided (extra: pip install atheris)

Structured fuzzing: each target of tests/fuzz_targets.py (images and their EXIF, depth files, sidecars, calibration
CSVs, --point values, recipes, overrides, manifests, videos, shared folders, checkpoints) gets ``--examples``
inputs from hypothesis (mutated seed files: bit flips, bytes set / inserted / deleted, cuts, header integers set to
extremes, syntax pieces spliced into texts), under an address-space limit (``--memory-gb`` above the process's own
footprint: an unbounded allocation fails as MemoryError, which counts as a crash) and a per-input alarm
(``--hang-seconds``: a hang counts too).
The contract and what counts as a crash: tests/fuzz_targets.py. A crash stops that target; its minimal input is
saved under benchmarks/results/fuzz-crashes/ (turn it into a regression test in tests/test_fuzz.py).

``--atheris NAME``: libFuzzer's coverage-guided search (atheris) over that target for ``--seconds``, Pillow's and
depthforge's Python code instrumented (the C decoders are not: their coverage does not steer it).

Writes benchmarks/results/fuzz.{json,md} (or fuzz_atheris_<name>.{json,md}).
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fuzz_targets

from _results import RESULTS, cpu_info, save_results  # noqa: E402  (benchmarks/_results.py)

CRASHES = RESULTS / "fuzz-crashes"


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang("no answer within the per-input time limit")


def structured(names: list[str], examples: int, seed: int, hang_seconds: int) -> list[dict]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    from tests.fuzz_targets import TARGETS, mutated

    signal.signal(signal.SIGALRM, _alarm)
    rows = []
    for name in names:
        target = TARGETS[name]
        seeds = target.seeds()
        last: list[bytes] = []
        first: list[str] = []

        def one(data: bytes) -> None:
            signal.alarm(hang_seconds)
            try:
                target(data)
            except BaseException as err:
                last[:] = [data]  # hypothesis replays the minimal failing input last
                if not first:  # the reader's own exception (hypothesis may wrap what it reports)
                    import traceback

                    where = traceback.extract_tb(err.__traceback__)[-1]
                    first.append(f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''} "
                                 f"at {where.filename.split('site-packages/')[-1]}:{where.lineno}")
                raise
            finally:
                signal.alarm(0)

        @hypothesis_seed(seed)
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(mutated(seeds, target.kind))
        def run(data):
            one(data)

        start, crash = time.perf_counter(), None
        try:
            run()
        except BaseException as err:  # noqa: BLE001 - any escape is the finding
            CRASHES.mkdir(parents=True, exist_ok=True)
            saved = CRASHES / f"{name}.bin"
            saved.write_bytes(last[0] if last else b"")
            crash = (f"{first[0] if first else type(err).__name__ + ': ' + str(err)[:200]} (input: {saved}; "
                     f"hypothesis: {type(err).__name__})")
        seconds = time.perf_counter() - start
        rows.append({"target": name, "inputs": target.tried, "refused": target.refused,
                     "read": target.tried - target.refused - (1 if crash else 0), "crashes": 1 if crash else 0,
                     "crash": crash, "seconds": round(seconds, 1)})
        print(f"{name:14s} {target.tried:7d} inputs  {target.refused:7d} refused  "
              f"{'CRASH ' + crash if crash else 'no crash'}  ({seconds:.0f} s)", flush=True)
    return rows


def coverage_guided(name: str, seconds: int) -> dict:
    """Run atheris over one target in a child process; its libFuzzer summary gives the executions."""
    import subprocess
    import tempfile

    from tests.fuzz_targets import TARGETS

    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for i, seed in enumerate(TARGETS[name].seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    CRASHES.mkdir(parents=True, exist_ok=True)
    child = (f"import sys, atheris\nsys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
             "with atheris.instrument_imports():\n    import PIL.Image, PIL.TiffImagePlugin, PIL.PngImagePlugin, "
             "PIL.JpegImagePlugin, PIL.WebPImagePlugin, PIL.BmpImagePlugin\n    import depthforge.io, "
             "depthforge.geometry.camera, depthforge.config, depthforge.data.folder\n"
             "from tests.fuzz_targets import TARGETS\n"
             f"target = TARGETS[{name!r}]\n"
             "def one(data):\n    target(data)\n"
             f"atheris.Setup([sys.argv[0], '-max_total_time={seconds}', '-rss_limit_mb=4096', '-timeout=20', "
             f"'-artifact_prefix={CRASHES}/{name}-atheris-', {str(corpus)!r}], one)\natheris.Fuzz()\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    log = done.stdout + done.stderr
    status = [line for line in log.splitlines() if line.startswith("#") and line[1:2].isdigit()]
    runs = [int(line.split()[0][1:]) for line in status]
    crashed = done.returncode != 0
    row = {"target": name, "mode": "atheris (coverage-guided)", "fuzzing_seconds": seconds,
           "seconds": round(time.perf_counter() - start), "executions": max(runs) if runs else 0,
           "last_status": status[-1] if status else None,  # libFuzzer's: coverage (cov), features (ft), corpus
           "crashes": 1 if crashed else 0, "crash": log[-1500:] if crashed else None}
    print(f"{name}: atheris {row['executions']} executions in {row['seconds']} s, "
          f"{'CRASH' if crashed else 'no crash'}", flush=True)
    if crashed:
        print(log[-3000:])
    return row


def main() -> int:
    from tests.fuzz_targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="inputs per target (structured)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated target names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-seconds", type=int, default=20, help="one input taking longer is a hang")
    parser.add_argument("--memory-gb", type=float, default=8.0,
                        help="address space the inputs may add to this process's footprint (torch's CUDA build "
                             "maps several GB of its own); beyond it an allocation fails: a crash")
    parser.add_argument("--name", default="fuzz", help="results file name (benchmarks/results/NAME.json)")
    parser.add_argument("--atheris", metavar="TARGET", help="coverage-guided run of one target instead")
    parser.add_argument("--seconds", type=int, default=300, help="--atheris: how long")
    args = parser.parse_args()
    if args.atheris:
        row = coverage_guided(args.atheris, args.seconds)
        save_results(f"fuzz_atheris_{args.atheris}", f"| {row['target']} | {row['mode']} | {row['seconds']} s | "
                     f"{row['executions']} | {row['crashes']} |", {"cpu": cpu_info(), **row})
        return 1 if row["crashes"] else 0
    names = [n.strip() for n in args.targets.split(",")]
    for name in names:  # imports done and seeds built first: the limit is headroom above that footprint
        TARGETS[name].seeds()
    footprint = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
    limit = footprint + int(args.memory_gb * 2 ** 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rows = structured(names, args.examples, args.seed, args.hang_seconds)
    table = "\n".join(["| reader | inputs | read | refused (one-line user error) | crashes | seconds |",
                       "|---|---|---|---|---|---|"]
                      + [f"| {r['target']} | {r['inputs']} | {r['read']} | {r['refused']} | {r['crashes']} | "
                         f"{r['seconds']} |" for r in rows])
    print(table)
    save_results(args.name, table, {"cpu": cpu_info(), "examples_per_target": args.examples, "seed": args.seed,
                                 "memory_headroom_gb": args.memory_gb, "footprint_gb": round(footprint / 2 ** 30, 1),
                                 "hang_seconds": args.hang_seconds,
                                 "crashes": sum(r["crashes"] for r in rows),
                                 "command": "python benchmarks/fuzz.py " + " ".join(sys.argv[1:])}, {"rows": rows})
    return 1 if any(r["crashes"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
