from locator.cells import Partition
from training.cli import main as geoloc_train


def test_partition_cli_round_trip(tmp_path, capsys):
    coords = tmp_path / "coords.csv"
    assert geoloc_train(["sample-coords", "--n", "5000", "--out", str(coords)]) == 0
    out = tmp_path / "cells.csv"
    assert geoloc_train(["partition", "--coords", str(coords), "--tau-max", "100", "--tau-min", "5",
                         "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "5,000 photos ->" in printed
    partition = Partition.read_csv(out)
    assert partition.num_images == 5000 and partition.counts.max() <= 100 and partition.counts.min() >= 5


def test_partition_cli_accepts_upper_case_columns_and_reports_bad_files(tmp_path, capsys):
    coords = tmp_path / "c.csv"
    coords.write_text("LAT,LON\n10,20\n10.001,20.001\n-30,40\n")
    assert geoloc_train(["partition", "--coords", str(coords), "--tau-max", "1", "--out", str(tmp_path / "o.csv")]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("y,x\n1,2\n")
    assert geoloc_train(["partition", "--coords", str(bad), "--tau-max", "1", "--out", str(tmp_path / "o2.csv")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: need a lat and a lon column" in err
    out_of_range = tmp_path / "range.csv"
    out_of_range.write_text("lat,lon\n10,20\n100,0\n")
    assert geoloc_train(["partition", "--coords", str(out_of_range), "--tau-max", "1", "--out", str(tmp_path / "o3.csv")]) == 2
    assert "range.csv: 1 invalid coordinate" in capsys.readouterr().err
