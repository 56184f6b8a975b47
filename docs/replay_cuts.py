#!/usr/bin/env python3
"""Replays a trace cut at every 2 s (from 40 s to its end) through `leaktracer report` and
prints the cuts at which a process was not judged `leaking`: how stable a verdict is over
the moment it is asked for.

    python3 docs/replay_cuts.py target/debug/leaktracer heapleak TRACE.jsonl...

(the traces behind docs/verdicts.md: `leaktracer record -d 2m` while docs/examples.sh's
workloads ran.)"""
import json
import subprocess
import sys
import tempfile


def verdicts_at_cuts(binary, comm, trace):
    records = [json.loads(line) for line in open(trace) if line.strip()]
    end = max(r.get("t", 0) for r in records)
    out = []
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as cut_file:
        for cut in range(40, int(end) + 1, 2):
            kept = [r for r in records if r.get("t", 0) <= cut and r["type"] != "summary"]
            cut_file.seek(0)
            cut_file.truncate()
            cut_file.write("\n".join(json.dumps(r) for r in kept) + "\n")
            cut_file.flush()
            report = subprocess.run(
                [binary, "report", cut_file.name, "--format", "json", "-n", "50"],
                capture_output=True, text=True, check=True,
            ).stdout
            hits = [s for s in json.loads(report)["suspects"] if s["comm"] == comm]
            out.append((cut, hits[0]["verdict"] if hits else "none"))
    return out


def main():
    binary, comm, traces = sys.argv[1], sys.argv[2], sys.argv[3:]
    total = bad = 0
    for trace in traces:
        cuts = verdicts_at_cuts(binary, comm, trace)
        misses = [(c, v) for c, v in cuts if v != "leaking"]
        total += len(cuts)
        bad += len(misses)
        print(f"{trace}: not leaking at {misses}")
    print(f"{comm}: not leaking at {bad} of {total} cuts")


if __name__ == "__main__":
    main()
