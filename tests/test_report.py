"""``curate report`` rendered in headless Chromium, and ``curate inspect``, on a real output."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from curation.cli import main
from curation.inspect.report import funnel, histogram_svg, load_output

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
# Four shots (two dropped, one with burnt-in text), an unreadable file and an audio-only file.
SMALL_INPUTS = ("series/ep 01/four shots.mp4", "series/broken.mp4", "series/soundtrack.mp4")


def curate_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``curate run`` on three files of ``samples/``, made once per session (the validate
    tests copy it)."""
    out = tmp_path_factory.getbasetemp() / "curated-small" / "out"
    if (out / "summary.json").exists():
        return out
    raw = out.parent / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in SMALL_INPUTS:
        shutil.copy(SAMPLES / name, raw / Path(name).name)
    one_part = out.parent / "one_part.yaml"  # the validate tests edit part-000000 and its shard
    one_part.write_text("output: {flush_seconds: 86400}\n")
    done = subprocess.run([sys.executable, "-m", "curation.cli", "run", str(raw), str(out),
                           "-c", str(one_part), "--num-cpus", "2"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return curate_small(tmp_path_factory)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no chromium binary on PATH (Debian package: chromium)")
    return binary


def _render(chromium: str, url: str, screenshot: Path) -> str:
    """The DOM of ``url`` after its load event, and a screenshot of the top of the page."""
    done = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={screenshot}", "--window-size=1200,1500", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def page(curated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(main, ["report", str(curated), "-o", str(target)])
    assert result.exit_code == 0, result.output
    return target


def test_funnel_matches_the_summary(curated: Path) -> None:
    output = load_output(curated)
    summary = output.summary
    steps = {step.key: step for step in funnel(output)}
    assert {k: s.count for k, s in steps.items()} == {
        "inputs": summary["inputs"], "accepted": summary["status"]["accepted"],
        "shots": summary["shots"], "kept": summary["shots_kept"], "samples": summary["samples"]}
    rules = {loss.rule: loss.count for loss in steps["accepted"].losses}
    assert rules == {**summary["rejected_by_rule"], **summary["failed_by_rule"]}
    dropped = {loss.rule: loss.count for loss in steps["kept"].losses}
    assert dropped == summary["shots_dropped_by_rule"]
    lost = sum(loss.hours for loss in steps["kept"].losses)
    assert steps["shots"].hours - steps["kept"].hours == pytest.approx(lost)


def test_histogram_bins_values_and_draws_limits() -> None:
    svg = histogram_svg("vqa_x", "shots", {"kept": [0, 0, 1, 2], "dropped": [10, None]},
                        {"min": 5.0})
    heights = [float(h) for h in re.findall(r'class="kept"[^>]* height="([\d.]+)"', svg)]
    assert len(heights) == 3 and heights[0] == pytest.approx(2 * heights[1])  # two zeros
    assert len(re.findall(r'<rect class="dropped"', svg)) == 1
    x = float(re.search(r'<line class="limit" x1="([\d.]+)"', svg).group(1))
    assert x == pytest.approx(8 + 0.5 * (300 - 16))  # 5 is halfway between 0 and 10
    assert "(5 shots)" in svg and "min 5" in svg


def test_report_renders_counts_and_frames_in_chromium(
    curated: Path, page: Path, chromium: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    screenshot = tmp_path_factory.getbasetemp() / "report.png"  # kept as a test artifact
    dom = _render(chromium, page.as_uri(), screenshot)
    summary = load_output(curated).summary
    counts = dict(re.findall(r'data-step="(\w+)" data-count="(\d+)"', dom))
    assert counts == {"inputs": str(summary["inputs"]), "shots": str(summary["shots"]),
                      "accepted": str(summary["status"]["accepted"]),
                      "kept": str(summary["shots_kept"]), "samples": str(summary["samples"])}
    rules = {**summary["rejected_by_rule"], **summary["failed_by_rule"],
             **summary["shots_dropped_by_rule"]}
    assert dict(re.findall(r'data-rule="([\w.]+)" data-count="(\d+)"', dom)) == {
        rule: str(count) for rule, count in rules.items()}
    assert len(re.findall(r'<section class="sample searchable"', dom)) == summary["samples"]
    sheet_frames = 2 * sum(len(s["shots"]) for s in load_output(curated).samples)
    assert len(re.findall(r'<img [^>]*src="data:image/jpeg;base64,', dom)) == sheet_frames
    assert f'id="rendered">{sheet_frames} of {sheet_frames}<' in dom  # every image decoded
    assert len(re.findall(r'<figure class="hist"', dom)) == 14  # 10 vqa_* and 4 vs_* scores
    contrast = re.search(r'data-score="vqa_contrast".*?</figure>', dom, re.S).group(0)
    assert '<line class="limit"' in contrast and "min 4" in contrast
    assert not re.search(r'(src|href)="https?:', dom)
    assert screenshot.stat().st_size > 20_000 and screenshot.read_bytes()[:4] == b"\x89PNG"


def test_search_box_filters_samples(
    curated: Path, page: Path, chromium: str, tmp_path: Path
) -> None:
    sample_id = load_output(curated).samples[-1]["sample_id"]
    dom = _render(chromium, f"{page.as_uri()}#q={sample_id}", tmp_path / "filtered.png")
    sections = re.findall(r'<section class="sample searchable" id="([\w-]+)"( hidden="")?', dom)
    assert [sid for sid, hidden in sections if not hidden] == [sample_id]
    assert len(sections) == load_output(curated).summary["samples"] > 1
    assert 'id="shown">1<' in dom


def test_inspect_prints_summary_and_rules(curated: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", str(curated)])
    assert result.exit_code == 0, result.output
    summary = load_output(curated).summary
    for rule, count in {**summary["rejected_by_rule"], **summary["failed_by_rule"]}.items():
        assert re.search(rf"- \w+ {re.escape(rule)}\s+{count}\s", result.output)
    assert re.search(rf"samples\s+{summary['samples']}\s", result.output)
