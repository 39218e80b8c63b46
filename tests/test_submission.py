"""Tests for cryokit.io.submission: round trip, atomic replacement, read-time validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryokit.io.submission import SUBMISSION_COLUMNS, read_submission, write_submission

HEADER = "id,experiment,particle_type,x,y,z\n"


def predictions():
    return pd.DataFrame(
        {
            "experiment": ["TS_5_4", "TS_5_4", "TS_69_2", "TS_6_4"],
            "particle_type": ["ribosome", "apo-ferritin", "beta-amylase", "virus-like-particle"],
            "x": [5274.903, 0.1 + 0.2, 1e-3, 6300.0],
            "y": [5288.121, 10.0, 2.5, 1.0],
            "z": [619.798, 1840.0, 3.0, 0.0],
            "score": [0.9, 0.8, 0.7, 0.6],
        },
        index=[10, 3, 7, 42],
    )


def write_text(path, text):
    path.write_text(text)
    return path


def test_round_trip_keeps_values_and_renumbers_ids(tmp_path):
    df = predictions()
    path = write_submission(df, tmp_path / "submission.csv")
    assert path == tmp_path / "submission.csv"
    assert path.read_text().splitlines()[0] == ",".join(SUBMISSION_COLUMNS)
    back = read_submission(path)
    assert tuple(back.columns) == SUBMISSION_COLUMNS  # score dropped, id first
    assert back["id"].tolist() == [0, 1, 2, 3]
    assert back["id"].dtype == np.int64
    assert back["experiment"].tolist() == df["experiment"].tolist()
    assert back["particle_type"].tolist() == df["particle_type"].tolist()
    for column in ("x", "y", "z"):  # floats survive bit for bit
        assert back[column].dtype == np.float64
        assert back[column].tolist() == df[column].tolist()


def test_empty_frame_writes_header_only(tmp_path):
    path = write_submission(predictions().iloc[:0], tmp_path / "empty.csv")
    assert path.read_text() == HEADER
    back = read_submission(path)
    assert back.empty and tuple(back.columns) == SUBMISSION_COLUMNS


def test_atomic_write_replaces_existing_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "submission.csv"
    write_text(path, "old content\n")
    write_submission(predictions(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]
    assert read_submission(path)["particle_type"].tolist()[0] == "ribosome"


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_submission(predictions(), tmp_path / "submission.csv")
    before = path.read_text()
    bad = predictions()
    bad.loc[7, "particle_type"] = "ribosme"
    with pytest.raises(ValueError, match=r"'ribosme' in row 2 of submission for .*submission\.csv"):
        write_submission(bad, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


def test_crash_while_writing_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    path = write_submission(predictions(), tmp_path / "submission.csv")
    before = path.read_text()

    def crash(self, target, **kwargs):
        with open(target, "w") as stream:
            stream.write("id,exper")  # half a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)
    with pytest.raises(OSError, match="No space left"):
        write_submission(predictions(), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


def test_write_rejects_non_finite_coordinate_and_missing_column(tmp_path):
    bad = predictions()
    bad.loc[42, "y"] = np.inf
    with pytest.raises(ValueError, match=r"row 3, column 'y' must be a finite number"):
        write_submission(bad, tmp_path / "s.csv")
    with pytest.raises(ValueError, match="missing column.*experiment"):
        write_submission(predictions().drop(columns="experiment"), tmp_path / "s.csv")
    assert not any(tmp_path.iterdir())


def test_read_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_submission(tmp_path / "nope.csv")


def test_read_missing_columns_are_named_with_the_file(tmp_path):
    path = write_text(tmp_path / "s.csv", "id,experiment,x,y\n0,TS_5_4,1,2\n")
    with pytest.raises(ValueError, match=r"s\.csv: missing column\(s\) particle_type, z"):
        read_submission(path)


def test_read_unknown_type_names_row_value_and_file(tmp_path):
    path = write_text(tmp_path / "s.csv", HEADER + "0,TS_5_4,ribosome,1,2,3\n1,TS_5_4,Ribosome,1,2,3\n")
    with pytest.raises(ValueError, match=r"'Ribosome' in row 1 \(line 3\) of .*s\.csv"):
        read_submission(path)


def test_read_non_numeric_x_names_row_and_column(tmp_path):
    path = write_text(tmp_path / "s.csv", HEADER + "0,TS_5_4,ribosome,1,2,3\n1,TS_5_4,ribosome,abc,2,3\n")
    with pytest.raises(ValueError, match=r"s\.csv: row 1 \(line 3\), column 'x' .*'abc'"):
        read_submission(path)


def test_read_nan_z_names_row_and_column(tmp_path):
    path = write_text(tmp_path / "s.csv", HEADER + "0,TS_5_4,ribosome,1,2,nan\n")
    with pytest.raises(ValueError, match=r"s\.csv: row 0 \(line 2\), column 'z' must be a finite"):
        read_submission(path)
    write_text(path, HEADER + "0,TS_5_4,ribosome,1,2,\n")  # an empty cell is no better
    with pytest.raises(ValueError, match=r"column 'z'"):
        read_submission(path)


def test_read_duplicate_or_non_integer_ids(tmp_path):
    path = write_text(tmp_path / "s.csv", HEADER + "0,TS_5_4,ribosome,1,2,3\n0,TS_5_4,ribosome,4,5,6\n")
    with pytest.raises(ValueError, match=r"s\.csv: row 1 \(line 3\), id 0 is not unique"):
        read_submission(path)
    write_text(path, HEADER + "0.5,TS_5_4,ribosome,1,2,3\n")
    with pytest.raises(ValueError, match=r"column 'id' must be an integer"):
        read_submission(path)


def test_read_empty_experiment_and_empty_file(tmp_path):
    path = write_text(tmp_path / "s.csv", HEADER + "0,,ribosome,1,2,3\n")
    with pytest.raises(ValueError, match=r"row 0 \(line 2\), column 'experiment' is empty"):
        read_submission(path)
    write_text(path, "")
    with pytest.raises(ValueError, match=r"s\.csv: not a readable submission CSV"):
        read_submission(path)
