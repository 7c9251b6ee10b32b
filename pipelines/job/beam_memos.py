"""Two of Beam's per-job introspections, each done once instead of hundreds of times.

Both are the largest fixed costs of a small local job (and of every test that runs one);
`install()` (called by `driver.execute`) puts a memo in front of each, in this process
only: a remote runner's workers do as they always do.

1. The state and timer check. Beam 2.77 asks `apache_beam.transforms.userstate.get_dofn_specs`
   whether a DoFn uses state or timers each time it applies, translates, validates or
   runs a ParDo: about 14 times per DoFn in one local job. Each call builds an
   `inspect.signature` for every method of the DoFn, inherited ones included. A
   histogram of the 566-row demo corpus builds about 100 ParDos, so the check took
   about 3.7 s of a 10 s job. The memo, keyed by the DoFn object (weakly: a DoFn that
   goes away takes its entry with it), returns what Beam's own function returned for it,
   as fresh sets: the answer depends on the DoFn's methods, which do not change once it
   exists.

2. Options views. `PipelineOptions.view_as(cls)` builds a new argparse parser of the
   options `cls` declares and parses all the job's flags with it, each call: about 1,100
   calls per small job, mostly from type checks asking for `TypeOptions` (1.8 s of a job
   that took 8.4 s under cProfile). A view holds nothing of its own but the parsed
   defaults: its values live in the dict it shares with the object it was made from
   (`_all_options`), so the memo keeps the view made first for each (options object,
   class) and returns it again, as long as that object still holds the same dict.

Objects that cannot be weakly referenced go to Beam's functions every time. Two threads
asking at once may each make a view; both share the one dict of values, so either serves.
"""

from __future__ import annotations

import weakref

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import userstate

_beams_own = userstate.get_dofn_specs
_beams_view_as = PipelineOptions.view_as
_specs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_dofn_specs(dofn) -> tuple[set, set]:
    """Beam's `get_dofn_specs(dofn)`, computed once per DoFn object."""
    try:
        state, timers = _specs[dofn]
    except KeyError:
        state, timers = _specs[dofn] = _beams_own(dofn)
    except TypeError:  # not weakly referable, or not hashable
        return _beams_own(dofn)
    return set(state), set(timers)


def view_as(options: PipelineOptions, cls: type) -> PipelineOptions:
    """Beam's `options.view_as(cls)`, made once per (options object, class)."""
    try:
        made = _views.setdefault(options, {})
    except TypeError:  # not weakly referable
        return _beams_view_as(options, cls)
    view = made.get(cls)
    if view is None or view._all_options is not options._all_options:
        view = made[cls] = _beams_view_as(options, cls)
    return view


def install() -> None:
    """Every caller in this process, from now on, goes through the memos."""
    userstate.get_dofn_specs = get_dofn_specs
    PipelineOptions.view_as = view_as
