"""The Markdown text of ``policygen report`` (analysis/report.py makes the numbers and figures)."""

from __future__ import annotations


def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _env_section(env: str, e: dict) -> list[str]:
    fig = e["figures"]
    lines = [f"## {env}", "", f"![learning curves of {env} against env steps]({fig['curves_steps']})", "",
             f"![learning curves of {env} against wall-clock seconds]({fig['curves_wall']})", "",
             "Final evaluation return (standard Gymnasium return, mean of the final evaluation's episodes), "
             "per run; IQM over seeds with its 95% stratified bootstrap CI (2,000 resamples).", "",
             "| algorithm | runs | IQM | 95% CI | mean | median env steps | median wall s "
             "| wall s to 90% of best IQM (runs reaching) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(e["table"], key=lambda r: -r["iqm"]):
        reach = f"{_f(r['median_wall_to_target'])} ({r['reached']}/{r['runs']})"
        lines.append(f"| {r['algorithm']} | {r['runs']} | {_f(r['iqm'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] "
                     f"| {_f(r['mean'])} | {r['median_env_steps']} | {_f(r['median_wall_s'])} | {reach} |")
    target = e["table"][0]["target"] if e["table"] else None
    lines += ["", f"The 90% target is {_f(target)}; wall seconds include the run's own evaluations.", ""]
    lines += _runs_section(e)
    lines += _poi_section(env, e)
    lines += _calibration_section(env, e)
    return lines


_MAPPED = " (through its command map)"
"""Marks a calibration swept through the run's command map (``policygen calibrate``), not G alone."""


def _runs_section(e: dict) -> list[str]:
    if "runs" not in e:  # a report.json from before the per-run table
        return []
    lines = ["Per run: the final evaluation, the best one, and the mean of the last 20 evaluations (fewer when the "
             "run has fewer; the UDRLPG paper's summary); calibration from the run's sweep.json, if any.", "",
             "| algorithm | seed | final | best | last-20 mean | env steps | wall s | calibration Spearman / MAE |",
             "|---|---|---|---|---|---|---|---|"]
    for r in e["runs"]:
        mae = None if r["mae_frac"] is None else 100 * r["mae_frac"]
        cal = "-" if r["spearman"] is None and mae is None else f"{_f(r['spearman'], 2)} / {_f(mae, 0)}%"
        cal += _MAPPED if r.get("command_map") else ""
        last = _f(r["last_mean"]) + ("" if r["last_n"] >= r["last_window"] else f" ({r['last_n']})")
        lines.append(f"| {r['algorithm']} | {r['seed']} | {_f(r['final'])} | {_f(r['best'])} | {last} "
                     f"| {r['env_steps']} | {_f(r['wall_s'], 0)} | {cal} |")
    return [*lines, ""]


def _poi_section(env: str, e: dict) -> list[str]:
    if not e["poi"]:
        return ["Probability of improvement: one algorithm only, nothing to compare.", ""]
    names = list(e["poi"])
    lines = [f"![probability of improvement on {env}]({e['figures']['poi']})", "",
             "P(row > column): the chance a random run of the row's method ends above a random run of the "
             "column's (ties count 1/2), with its 95% bootstrap CI.", "",
             "| P(row > column) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for x in names:
        cells = ["-" if x == y else f"{e['poi'][x][y][0]:.2f} [{e['poi'][x][y][1]:.2f}, {e['poi'][x][y][2]:.2f}]"
                 for y in names]
        lines.append(f"| {x} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _calibration_section(env: str, e: dict) -> list[str]:
    lines = []
    if "calibration" in e["figures"]:
        lines += [f"![generator calibration on {env}]({e['figures']['calibration']})", "",
                  "| run | algorithm | Spearman | MAE (share of range) |", "|---|---|---|---|"]
        lines += [f"| {c['run']} | {c['algorithm']} | {_f(c['spearman'], 3)} | {_f(c['mae_frac'], 3)}"
                  f"{_MAPPED if c.get('command_map') else ''} |" for c in e["calibration"]]
        lines.append("")
    if e["generators_without_sweep"]:
        lines += [f"Calibration: {len(e['generators_without_sweep'])} generator run(s) hold no sweep.json, so no "
                  f"calibration curve for them (make one with `policygen sweep RUN --episodes 5`, which writes "
                  f"RUN/sweep.json)."]
        lines.append("")
    elif "calibration" not in e["figures"]:
        lines += ["Calibration: no generator runs (gogepo, udrlpg) in this table.", ""]
    return lines


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# policygen benchmark report", "",
             f"Made {result['made']} on {m['cpu']}, {m['cores']} cores (load average {m['load_avg_1_5_15']} when "
             f"the report was made), {m['platform']}; report made by policygen commit `{result['commit']}`; runs "
             f"made at commit(s) {', '.join(f'`{c[:10]}`' for c in result['run_commits']) or 'unknown'}.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".", "",
             f"Inputs: {', '.join(result['inputs'])}. Runs used: {result['runs_used']}; skipped: "
             f"{len(result['skipped'])} (listed at the end).", ""]
    lines += [f"Note: {n}" for n in result["notes"]] + ([""] if result["notes"] else [])
    lines += ["Dashed curves are the step-based baselines; solid ones act in parameter space. Wall-clock axes "
              "are symlog.", ""]
    for env, e in result["envs"].items():
        lines += _env_section(env, e)
    lines += ["## Skipped runs", ""]
    lines += [f"- {s}" for s in result["skipped"]] or ["None."]
    return "\n".join(lines) + "\n"
