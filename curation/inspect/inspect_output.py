"""``curate inspect OUT``: the summary of an output folder and its funnel, per rule, as text."""

from __future__ import annotations

from pathlib import Path

from curation.inspect.report import format_duration, funnel, load_output
from curation.output.summary import format_summary


def inspect_text(out_dir: Path) -> str:
    """The run summary, then each funnel step with the count and duration each rule removed,
    then the seconds each stage took."""
    output = load_output(out_dir)
    summary = output.summary
    lines = [f"{out_dir}: config {summary['config_fingerprint']}, last run "
             f"{summary['last_run_wall_seconds']:.1f} s", format_summary(summary), "", "funnel:"]
    for step in funnel(output):
        lines.append(f"  {step.label:<40s} {step.count:7d}  {format_duration(step.hours):>12s}")
        for loss in step.losses:
            label = f"- {loss.status} {loss.rule}"
            lines.append(f"    {label:<38s} {loss.count:7d}  {format_duration(loss.hours):>12s}")
    lines += ["", "stage seconds (summed over videos):"]
    lines += [f"  {name:<14s} {seconds:10.1f}"
              for name, seconds in summary["stage_seconds"].items()]
    return "\n".join(lines)
