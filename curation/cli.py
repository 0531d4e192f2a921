"""The ``curate`` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from curation.config import ConfigError, load_config
from curation.plan import PreflightError
from curation.run_state import RunStateError
from models.train_cli import sample_command, train_command


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
def run_command(raw_dir: Path, out_dir: Path, config_path: Path | None, ray_address: str | None,
                num_cpus: int | None, limit: int | None, resume: bool, strict: bool) -> None:
    """Curate the videos under RAW_DIR into OUT_DIR."""
    from curation.runner import RunOptions, run
    from curation.summary import format_summary

    try:
        config = load_config(config_path)
        options = RunOptions(ray_address=ray_address, num_cpus=num_cpus, limit=limit,
                             overwrite=not resume)
        result = run(raw_dir, out_dir, config, options)
    except (ConfigError, PreflightError, RunStateError, FileNotFoundError) as err:
        click.echo(f"curate: error: {err}", err=True)
        sys.exit(2)
    click.echo(format_summary(result.summary))
    click.echo(f"this run: {result.processed} files processed, {result.skipped_done} already "
               f"done, {result.seconds:.1f} s; results in {out_dir}")
    if strict and result.failed:
        click.echo(f"curate: --strict: {result.failed} file(s) failed", err=True)
        sys.exit(1)


main.add_command(train_command)
main.add_command(sample_command)

if __name__ == "__main__":
    main()
