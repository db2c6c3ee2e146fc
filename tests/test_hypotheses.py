"""shared.hypotheses: a verdict follows from its value and threshold, the record round-trips through an executed
notebook's JSON output, and a verdict that disagrees with its own value is found."""
import nbformat
import pytest

from shared.hypotheses import FAILS, HOLDS, NOT_MEASURED, Hypotheses, disagreeing, read


def test_verdicts_follow_value_and_threshold(capsys):
    hypothesis = Hypotheses()
    hypothesis("selects", 0.95, ">", 0.5, "'selects' means most of the attention")
    hypothesis("near_ties", 0.5, ">", 0.5, "'most' means more than half")
    hypothesis("proved", None, ">", 0, "a positive margin", note="out of scope: two layers")
    assert [h.verdict for h in hypothesis.values()] == [HOLDS, FAILS, NOT_MEASURED]
    assert hypothesis.tally() == "1 of 2 hypotheses measured on this model hold, 1 FAIL; 1 not measured here"
    hypothesis("near_ties", 0.7, ">", 0.5, "'most' means more than half")  # a cell run again replaces its row
    assert list(hypothesis) == ["selects", "near_ties", "proved"] and hypothesis["near_ties"].verdict == HOLDS
    assert "selects holds: 0.950 > 0.500" in capsys.readouterr().out  # each call shows its line
    with pytest.raises(ValueError, match="op must be one of"):
        hypothesis("x", 1, "==", 1, "no such comparison")


def test_the_record_is_read_back_from_a_notebook_and_checked(tmp_path):
    hypothesis = Hypotheses()
    hypothesis("accuracy", 0.9995, ">=", 0.999, "the bar", "%")
    hypothesis.measured("errors", 12)
    record = hypothesis.record()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("summary")])
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", {"application/json": record, "text/plain": "."})]
    nbformat.write(nb, tmp_path / "done.ipynb")
    back = read(tmp_path / "done.ipynb")
    assert back["hypotheses"][0]["verdict"] == HOLDS and back["measurements"] == [{"key": "errors", "value": 12.0,
                                                                                 "unit": ""}]
    assert disagreeing(back) == []
    back["hypotheses"][0]["value"] = 0.99  # a verdict that no longer follows from its value
    assert disagreeing(back) == ["accuracy"]
    with pytest.raises(ValueError, match="execute it to the end"):
        read(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]))
