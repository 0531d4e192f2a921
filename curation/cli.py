"""The ``curate`` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from curation.config import ConfigError, PipelineConfig, load_config
from curation.output.disk_full import DiskFullError
from curation.plan import PreflightError
from curation.run_state import RunStateError
from models.train_cli import export_command, sample_command, train_command

if TYPE_CHECKING:
    from curation.runner import RunOptions


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """MoGA-Curate: raw long videos in, shot-level training data out."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command("run")
@click.argument("raw_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Pipeline YAML (default: built-in defaults, the same as pipeline.yaml).")
@click.option("--ray-address", help="Existing Ray cluster, e.g. 127.0.0.1:6379 (default: local).")
@click.option("--num-cpus", type=click.IntRange(min=1), help="CPUs for the local Ray.")
@click.option("--limit", type=click.IntRange(min=0), help="Process at most N new files.")
@click.option("--resume/--overwrite", default=True, show_default=True,
              help="Continue the run in OUT_DIR, or delete its results and start again.")
@click.option("--strict", is_flag=True, help="Exit 1 if any file failed.")
@click.option("--dry-run", is_flag=True,
              help="List what would run where and check models, ffmpeg and space; exit 0 or 2.")
@click.option("--progress", type=click.Choice(["auto", "bar", "plain", "quiet"]), default="auto",
              show_default=True, help="Live bars (terminal), a log line per video, or nothing.")
@click.option("--set", "overrides", multiple=True,
              help="Override a config key, e.g. --set stages.shot_split.cut_threshold=30 "
                   "(repeatable; value is YAML).")
def run_command(raw_dir: Path, out_dir: Path, config_path: Path | None, ray_address: str | None,
                num_cpus: int | None, limit: int | None, resume: bool, strict: bool,
                dry_run: bool, progress: str, overrides: tuple[str, ...]) -> None:
    """Curate the videos under RAW_DIR into OUT_DIR."""
    from curation.output.summary import format_summary
    from curation.runner import RunOptions, run

    try:
        config = load_config(config_path, overrides)
        options = RunOptions(ray_address=ray_address, num_cpus=num_cpus, limit=limit,
                             overwrite=not resume, progress=progress)
        if dry_run:
            _dry_run(raw_dir, out_dir, config, options)
            return
        result = run(raw_dir, out_dir, config, options)
    except (ConfigError, PreflightError, RunStateError, FileNotFoundError) as err:
        click.echo(f"curate: error: {err}", err=True)
        sys.exit(2)
    except DiskFullError as err:
        click.echo(f"curate: error: {err}", err=True)
        sys.exit(3)
    click.echo(format_summary(result.summary))
    click.echo(f"this run: {result.processed} files processed, {result.skipped_done} already "
               f"done, {result.seconds:.1f} s; results in {out_dir}")
    if strict and result.failed:
        click.echo(f"curate: --strict: {result.failed} file(s) failed", err=True)
        sys.exit(1)


def _dry_run(raw_dir: Path, out_dir: Path, config: PipelineConfig, options: RunOptions) -> None:
    from curation.dry_run import dry_run

    lines, ok = dry_run(raw_dir, out_dir, config, options)
    click.echo("\n".join(lines))
    if not ok:
        sys.exit(2)


@main.command("report")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the page (default: OUT_DIR/report.html).")
@click.option("--max-samples", type=click.IntRange(min=0), default=200, show_default=True,
              help="Contact sheets for at most this many samples.")
def report_command(out_dir: Path, output: Path | None, max_samples: int) -> None:
    """Write a self-contained HTML report of OUT_DIR."""
    from curation.inspect.report import write_report

    try:
        click.echo(f"wrote {write_report(out_dir, output, max_samples)}")
    except FileNotFoundError as err:
        _not_an_output(out_dir, err)


@main.command("inspect")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def inspect_command(out_dir: Path) -> None:
    """Print the summary of OUT_DIR and what each stage and rule removed."""
    from curation.inspect.inspect_output import inspect_text

    try:
        click.echo(inspect_text(out_dir))
    except FileNotFoundError as err:
        _not_an_output(out_dir, err)


def _not_an_output(out_dir: Path, err: FileNotFoundError) -> None:
    click.echo(f"curate: error: {out_dir} is not a finished curate run output ({err})", err=True)
    sys.exit(2)


@main.command("validate")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--raw", "raw_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Input folder to re-discover (default: the one the videos rows point at).")
def validate_command(out_dir: Path, raw_dir: Path | None) -> None:
    """Check OUT_DIR against the output contract; exit 1 listing every violation."""
    from curation.inspect.validate import validate

    problems = validate(out_dir, raw_dir)
    for problem in problems:
        click.echo(problem)
    if problems:
        click.echo(f"curate validate: {len(problems)} violation(s) in {out_dir}", err=True)
        sys.exit(1)
    click.echo(f"{out_dir}: valid")


main.add_command(train_command)
main.add_command(sample_command)
main.add_command(export_command)

if __name__ == "__main__":
    main()
