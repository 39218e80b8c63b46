"""The experiment benchmark rewrites its docs section without losing rows or notes it cannot regenerate."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pytest  # noqa: E402
from _report import read_section, report_header, update_section  # noqa: E402
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


def _fold_body(score: float) -> str:
    return f"- Date: today\n\nEach run fits in turn:\n\n| fitted on | model |\n|---|---:|\n| run | {score} |"


def test_keep_notes_refreshes_the_table_and_keeps_the_prose_under_it(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# cryokit benchmarks\n\n## Folds\n\nold\n\n## After\n\nkept\n")
    update_section("Folds", _fold_body(0.7), path, keep_notes=True)
    path.write_text(path.read_text().replace("| run | 0.7 |\n", "| run | 0.7 |\n\nWhy it scored so.\n\nMore.\n"))

    update_section("Folds", _fold_body(0.8), path, keep_notes=True)
    section = read_section("Folds", path)
    assert "| run | 0.8 |" in section and "0.7" not in section
    assert section.endswith("| run | 0.8 |\n\nWhy it scored so.\n\nMore.")
    assert section.count("Why it scored so.") == 1
    assert path.read_text().endswith("## After\n\nkept\n")

    update_section("Folds", _fold_body(0.9), path)  # without keep_notes the section is the body alone
    assert read_section("Folds", path).endswith("| run | 0.9 |")


def test_keep_notes_refuses_a_body_with_prose_under_its_table(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    with pytest.raises(ValueError, match="end at its table"):
        update_section("Folds", _fold_body(0.8) + "\n\ngenerated prose", path, keep_notes=True)


def test_benchmark_candidates_are_predicted_once_per_model_tta_and_run(tmp_path, monkeypatch):
    import os

    import _candidates
    import pandas as pd

    calls = []

    def fake_group_candidates(checkpoints, root, split, runs, tta, progress):
        calls.append((tuple(checkpoints), tuple(runs), tta))
        frame = pd.DataFrame({"experiment": runs, "particle_type": ["ribosome"], "x": [1.5], "score": [0.25]})
        frame.attrs.update(tta=tta, thresholds={"ribosome": 0.5}, seconds=[1.0])
        return ["model"], [frame]

    monkeypatch.setattr(_candidates, "group_candidates", fake_group_candidates)
    root, checkpoint = tmp_path / "data", tmp_path / "best.pt"
    root.mkdir()
    checkpoint.write_bytes(b"weights")
    first = _candidates.run_candidates([checkpoint], root, "TS_a", "flips")
    again = _candidates.run_candidates([checkpoint], root, "TS_a", "flips")
    assert len(calls) == 1  # the second came from the cache beside the data
    pd.testing.assert_frame_equal(first, again)
    assert again.attrs == {"tta": "flips", "thresholds": {"ribosome": 0.5}, "seconds": [1.0]}
    _candidates.run_candidates([checkpoint], root, "TS_a", "none")
    _candidates.run_candidates([checkpoint], root, "TS_b", "flips")
    assert len(calls) == 3  # another TTA or run is another entry
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # retrained: predicted anew
    _candidates.run_candidates([checkpoint], root, "TS_a", "flips")
    assert len(calls) == 4
    assert not list((tmp_path / "candidate_cache").glob(".*.tmp-*"))  # atomic_path's temporaries are gone
    # Several runs in one table, from the cache, with the TTA recorded for fit_ensemble
    both = _candidates.runs_candidates([checkpoint], root, ["TS_a", "TS_b"], "flips")
    assert len(calls) == 5  # TS_b's entry was for the checkpoint before it changed
    assert list(both["experiment"]) == ["TS_a", "TS_b"] and both.attrs == {"tta": "flips"}


def test_report_header_names_the_command_machine_and_date_with_their_notes():
    plain = report_header("benchmarks/x.py --domain fixed", date="2026-12-01")
    assert plain[0] == "- Command: `benchmarks/x.py --domain fixed`"
    assert plain[1].startswith("- Machine: ") and "cores" in plain[1] and "torch" in plain[1]
    assert plain[2] == "- Date: 2026-12-01"
    noted = report_header("x", date_note="9 minutes in all", machine_note="(shared)", command_note="(one: `x N`)")
    assert noted[0] == "- Command: `x` (one: `x N`)"
    assert noted[1].endswith(" (shared)")
    assert noted[2].endswith("; 9 minutes in all") and noted[2][len("- Date: ") :][:4].isdigit()


def test_the_experiment_report_dates_itself_by_its_newest_result(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    _write_section(path, [_result("default", 0.8), {**_result("ema", 0.7), "date": "2026-12-07"}])
    header = read_section(SECTION, path).splitlines()
    assert any(
        line.startswith("- Command: `") and line.endswith("--family detector` (one variant: `... NAME`)")
        for line in header
    )
    assert "- Date: 2026-12-07" in header
