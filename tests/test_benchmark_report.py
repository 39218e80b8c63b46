"""The experiment benchmark rewrites its docs section without losing rows or notes it cannot regenerate."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _report import read_section  # noqa: E402
from unet_experiments import DETECTOR_VARIANTS, write_report  # noqa: E402

from cryokit.particles import SCORED_PARTICLE_NAMES  # noqa: E402

SECTION = "Detector experiments (randomized simulator)"


def _result(name: str, score: float) -> dict:
    return {
        "name": name,
        "change": DETECTOR_VARIANTS[name][0],
        "score": score,
        "per_class": {n: score for n in SCORED_PARTICLE_NAMES},
        "train_minutes": 10.0,
        "date": "2026-12-06",
    }


def _write_section(path: Path, results: list[dict], notes: str = "", timing: dict | None = None) -> None:
    """What the benchmark writes, then ``notes`` added under it by hand."""
    write_report(results, 24, "randomized", timing, "detector", path)
    if notes:
        path.write_text(path.read_text().rstrip("\n") + f"\n\n{notes}\n")


def test_a_rerun_of_one_variant_keeps_the_other_rows_and_the_notes(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# cryokit benchmarks\n\n## Before\n\nkept\n")
    _write_section(path, [_result("ema", 0.5), _result("default", 0.8)], "Why EMA lost.\n\nA second paragraph.")
    # The scratch folder now holds box10 alone, and the default's score changed there.
    _write_section(path, [_result("box10", 0.7), _result("default", 0.81)])

    section = read_section(SECTION, path)
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["default", "ema", "box10"]  # the family's order
    assert "**0.810**" in rows[0] and "**0.500**" in rows[1] and "**0.700**" in rows[2]
    assert section.endswith("Why EMA lost.\n\nA second paragraph.")
    assert section.count("Why EMA lost.") == 1
    assert "## Before\n\nkept" in path.read_text()


def test_the_cpu_time_paragraph_is_kept_until_a_new_timing_replaces_it(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    timing = {"seconds": {"default": 60.0}, "epochs": 2, "repeats": 2, "date": "2026-12-05"}
    _write_section(path, [_result("default", 0.8)], "Notes.", timing)
    assert "`default` 60.0 s" in read_section(SECTION, path)

    _write_section(path, [_result("ema", 0.7)])  # no timing file here
    assert "`default` 60.0 s" in read_section(SECTION, path)

    _write_section(path, [_result("ema", 0.7)], timing={**timing, "seconds": {"default": 50.0}})
    section = read_section(SECTION, path)
    assert "`default` 50.0 s" in section and "60.0 s" not in section
    assert section.endswith("Notes.")
