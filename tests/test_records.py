import numpy as np
import pyarrow as pa

from transforms import records


def raw(labels, vectors, ids=None):
    lengths = np.array([-1 if v is None else len(v) for v in vectors])
    values = np.array([x for v in vectors if v is not None for x in v], np.float32)
    return {"source": "f.parquet", "row": np.arange(len(labels)), "id": ids,
            "label": np.array(labels, dtype=object), "values": values, "lengths": lengths, "errors": None}


def test_validate_reasons():
    good, bad = records.validate(raw(
        ["a", None, "  ", "b", "c", "d", "e"],
        [[1, 2], [1, 2], [1, 2], [1, 2, 3], [np.nan, 1], None, [np.inf, 0]]), dim=2)
    assert good["label"].tolist() == ["a"] and good["features"].shape == (1, 2)
    assert bad["reason"].tolist() == [
        "label is missing", "label is empty", "feature vector has 3 values, expected 2",
        "features contain NaN, inf or a missing value", "features are missing",
        "features contain NaN, inf or a missing value"]
    assert bad["row"].tolist() == [1, 2, 3, 4, 5, 6]


def test_ids_from_input_or_content():
    good, _ = records.validate(raw(["a", "a"], [[1, 2], [1, 2]], ids=np.array(["x", None], object)), dim=2)
    assert good["id"][0] == "x" and len(good["id"][1]) == 16
    again, _ = records.validate(raw(["a"], [[1, 2]]), dim=2)
    assert again["id"][0] == good["id"][1]


def test_label_strings_integers_in_decimal():
    assert records.label_strings(pa.array([3, None, 10])).tolist() == ["3", None, "10"]
    assert records.label_strings(pa.array([3.0, 4.0])).tolist() == ["3", "4"]


def test_columns_that_do_not_parse():
    values, lengths, errors = records.ragged_from_columns(
        [pa.array(["1.5", "x", None]), pa.array(["2", "3", "4"])], ["f0", "f1"])
    assert errors.tolist() == [None, "value 'x' in column 'f0' is not a number", "missing value in column 'f0'"]
    assert values[:2].tolist() == [1.5, 2.0]
