"""Gather a bench/make_an_agent_metaworld.sh ROOT into bench/results/make-an-agent-metaworld.{md,json}.

    PYTHONPATH=src python bench/make_an_agent_metaworld_results.py ROOT --out bench/results/make-an-agent-metaworld

Every figure is read from ROOT's files (ARS summaries, collect, prompts, the make-an-agent run, report-agent);
the targets are checked here, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from policygen.runs.files import atomic_write_bytes, atomic_write_json


def _json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def gather(root: Path) -> dict:
    ars = {p.stem[4:]: {k: s.get(k) for k in ("env_id", "env_steps", "wall_s", "final_eval_return")}
           for p in sorted(root.glob("ars-*.json")) if (s := _json(p))}
    prompts = {p.stem: {"success": j.get("success"), "returns_mean": sum(j["returns"]) / len(j["returns"])}
               for p in sorted((root / "prompts").glob("*.json")) if (j := _json(p))}
    maa = _json(root / "maa.json") or {}
    rep = _json(root / "report" / "report.json")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    # the commits the runs were made at (each run's config.json), beside the one gathering them
    made_at = {f"ars/{p.parent.name}": c.get("commit") for p in sorted((root / "ars").glob("*/config.json"))
               if (c := _json(p))}
    made_at["make-an-agent"] = (_json(root / "maa" / "config.json") or {}).get("commit")
    out = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit, "run_commits": made_at,
           "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
           "times_log": (root / "times.log").read_text().splitlines() if (root / "times.log").exists() else [],
           "ars": ars, "collect": _json(root / "collect.json"), "prompts": prompts,
           "make_an_agent": {k: maa.get(k) for k in ("records", "wall_s", "stages", "env_ids")},
           "report": rep}
    if rep:
        seen = rep["summary"].get("seen", {})
        unseen = rep["summary"].get("unseen", {})
        top5 = seen.get("0", {}).get("generated", {}).get("top5")
        vs_bc = {}
        for lvl, c in unseen.items():
            if lvl in ("tasks", "training_data"):
                continue
            g, b = c["generated"]["top5"], c.get("behaviour_cloning", {}).get("top5")
            vs_bc[lvl] = {"generated": g, "bc": b, "beats_bc": b is not None and g > b}
        out["targets"] = {"seen_top5_ge_0.8": {"value": top5, "met": top5 is not None and top5 >= 0.8},
                          "unseen_generated_vs_bc_top5": vs_bc}
    return out


def markdown(r: dict) -> str:
    from policygen.analysis.agent_report import report_markdown

    lines = ["# Make-An-Agent on MetaWorld v3 (EnvPool), CPU scale", "",
             f"Gathered {r['date']} at commit `{r['commit'][:10]}`, {r['machine']['cpu']} ({r['machine']['cores']} "
             "cores), shared with other benchmarks: every command nice 19 on one core (taskset -c 1).", "",
             "Runs made at: " + ", ".join(f"{k} `{(v or '?')[:10]}`" for k, v in r.get("run_commits", {}).items())
             + " (report-agent ran at the gathering commit's code or earlier: see the times below).", "",
             "Commands (ROOT = the run folder):", "", "```",
             "bench/make_an_agent_metaworld.sh ars ROOT", "bench/make_an_agent_metaworld.sh data ROOT",
             "bench/make_an_agent_metaworld.sh report ROOT",
             "PYTHONPATH=src python bench/make_an_agent_metaworld_results.py ROOT --out "
             "bench/results/make-an-agent-metaworld", "```", "", "Stage times and load (1/5/15 min):", "", "```",
             *r["times_log"], "```", "", "## ARS runs (training data and prompt sources)", "",
             "| task | env steps | wall s | final eval return (100-step episodes) | prompt success (10 x 500 steps) |",
             "|---|---:|---:|---:|---|"]
    for t, a in r["ars"].items():
        ps = r["prompts"].get(t, {}).get("success")
        lines.append(f"| {t} | {a['env_steps']} | {a['wall_s']:.0f} | {a['final_eval_return']:.0f} | "
                     f"{'-' if ps is None else f'{sum(ps)}/{len(ps)}'} |")
    m = r["make_an_agent"]
    lines += ["", f"Data set: {r['collect']}. Make-An-Agent stages: {m.get('records')} records, "
              f"{(m.get('wall_s') or 0):.0f} s.", ""]
    if r.get("report"):
        lines += ["## Report (policygen report-agent)", "", report_markdown(r["report"]), "## Targets", ""]
        t = r["targets"]
        v = t["seen_top5_ge_0.8"]
        lines.append(f"- Seen tasks, top-5 success averaged (noise 0): {v['value']:.2f}; target >= 0.8: "
                     f"**{'met' if v['met'] else 'missed'}**.")
        for lvl, c in t["unseen_generated_vs_bc_top5"].items():
            lines.append(f"- Unseen tasks, noise {lvl}: generated top-5 {c['generated']:.2f} vs behaviour cloning "
                         f"{c['bc']:.2f}: **{'beats' if c['beats_bc'] else 'does not beat'}** BC.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--out", required=True, help="path without suffix")
    a = ap.parse_args()
    r = gather(Path(a.root))
    atomic_write_json(a.out + ".json", r)
    atomic_write_bytes(a.out + ".md", markdown(r).encode())
    print(a.out + ".md")


if __name__ == "__main__":
    main()
