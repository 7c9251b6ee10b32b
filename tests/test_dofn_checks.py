"""pipelines/dofn_checks.py: Beam's state/timer check answered once per DoFn, with Beam's own answer."""

import apache_beam as beam
import apache_beam.testing.util
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from pipelines import dofn_checks


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

    original = dofn_checks._beams_own

    def beams_own(dofn):
        asked.append(dofn)
        return original(dofn)

    monkeypatch.setattr(dofn_checks, "_beams_own", beams_own)
    stateful, plain = _Stateful(), _Plain()
    for _ in range(3):
        state, timers = dofn_checks.get_dofn_specs(stateful)
        assert {s.name for s in state} == {"count"} and not timers
        assert dofn_checks.get_dofn_specs(plain) == (set(), set())
    assert asked == [stateful, plain]
    dofn_checks.get_dofn_specs(stateful)[0].clear()  # a caller's change to the sets is not kept
    assert {s.name for s in dofn_checks.get_dofn_specs(stateful)[0]} == {"count"}


def test_installed_beam_runs_a_stateful_dofn_as_before(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)  # undone after the test
    dofn_checks.install()
    assert userstate.get_dofn_specs is dofn_checks.get_dofn_specs
    assert userstate.is_stateful_dofn(_Stateful()) and not userstate.is_stateful_dofn(_Plain())
    with beam.Pipeline("FnApiRunner") as p:
        counted = (p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(_Stateful())
                   | beam.combiners.Count.Globally())
        beam.testing.util.assert_that(counted, beam.testing.util.equal_to([3]))
