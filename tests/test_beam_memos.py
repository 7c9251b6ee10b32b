"""pipelines/job/beam_memos.py: Beam's state/timer check answered once per DoFn and options views made
once per class, with Beam's own answers."""

import apache_beam as beam
import apache_beam.testing.util
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TypeOptions
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from pipelines.job import beam_memos


class _Stateful(beam.DoFn):
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, element, count=beam.DoFn.StateParam(COUNT)):  # noqa: B008 - how Beam declares state
        count.write((count.read() or 0) + 1)
        yield element


class _Plain(beam.DoFn):
    def process(self, element):
        yield element


def test_the_memo_gives_beams_answer_and_asks_beam_once_per_dofn(monkeypatch):
    asked = []

    original = beam_memos._beams_own

    def beams_own(dofn):
        asked.append(dofn)
        return original(dofn)

    monkeypatch.setattr(beam_memos, "_beams_own", beams_own)
    stateful, plain = _Stateful(), _Plain()
    for _ in range(3):
        state, timers = beam_memos.get_dofn_specs(stateful)
        assert {s.name for s in state} == {"count"} and not timers
        assert beam_memos.get_dofn_specs(plain) == (set(), set())
    assert asked == [stateful, plain]
    beam_memos.get_dofn_specs(stateful)[0].clear()  # a caller's change to the sets is not kept
    assert {s.name for s in beam_memos.get_dofn_specs(stateful)[0]} == {"count"}


def test_installed_beam_runs_a_stateful_dofn_as_before(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)  # undone after the test
    monkeypatch.setattr(PipelineOptions, "view_as", PipelineOptions.view_as)
    beam_memos.install()
    assert userstate.get_dofn_specs is beam_memos.get_dofn_specs
    assert userstate.is_stateful_dofn(_Stateful()) and not userstate.is_stateful_dofn(_Plain())
    with beam.Pipeline("FnApiRunner") as p:
        counted = (p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(_Stateful())
                   | beam.combiners.Count.Globally())
        beam.testing.util.assert_that(counted, beam.testing.util.equal_to([3]))


def test_an_options_view_is_made_once_per_class_and_shares_the_values(monkeypatch):
    made = []
    original = beam_memos._beams_view_as

    def beams_view_as(options, cls):
        made.append(cls)
        return original(options, cls)

    monkeypatch.setattr(beam_memos, "_beams_view_as", beams_view_as)
    options = PipelineOptions(["--runner=FnApiRunner", "--no_pipeline_type_check"])
    for _ in range(3):
        assert beam_memos.view_as(options, StandardOptions).runner == "FnApiRunner"
        assert beam_memos.view_as(options, TypeOptions).pipeline_type_check is False
    assert made == [StandardOptions, TypeOptions]
    # a value set through one view is seen through every view of the object, as in Beam
    beam_memos.view_as(options, StandardOptions).runner = "DirectRunner"
    assert beam_memos.view_as(options, StandardOptions).runner == "DirectRunner"
    assert options.view_as(StandardOptions).runner == "DirectRunner"  # Beam's own view sees it too
    # another options object gets views of its own
    other = PipelineOptions(["--runner=PrismRunner"])
    assert beam_memos.view_as(other, StandardOptions).runner == "PrismRunner"
    assert made == [StandardOptions, TypeOptions, StandardOptions]
