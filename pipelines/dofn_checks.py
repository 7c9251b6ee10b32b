"""Beam's per-DoFn state and timer check, done once per DoFn instead of a dozen times.

Beam 2.77 asks `apache_beam.transforms.userstate.get_dofn_specs` whether a DoFn uses
state or timers each time it applies, translates, validates or runs a ParDo: about 14
times per DoFn in one local job. Each call builds a MethodWrapper, and so an
`inspect.signature`, for every method of the DoFn, inherited ones included (dir(dofn)).
A histogram of the 566-row demo corpus builds about 100 ParDos (ours and those inside
Beam's composites: reads, combiners, side inputs), so the check took about 3.7 s of a
10 s job: the largest fixed cost of every small job, and of each test that runs one.

`install()` puts a memo in front of it, keyed by the DoFn object (weakly: a DoFn
that goes away takes its entry with it). The answer is a function of the DoFn's
methods' signatures, which do not change once it exists, so the memo returns what
Beam's own function returned for it (as fresh sets). DoFns that cannot be weakly
referenced or hashed go to Beam's function every time. Only this process changes: a
remote runner's workers check as they always do.
"""

from __future__ import annotations

import weakref

from apache_beam.transforms import userstate

_beams_own = userstate.get_dofn_specs
_specs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_dofn_specs(dofn) -> tuple[set, set]:
    """Beam's `get_dofn_specs(dofn)`, computed once per DoFn object."""
    try:
        state, timers = _specs[dofn]
    except KeyError:
        state, timers = _specs[dofn] = _beams_own(dofn)
    except TypeError:  # not weakly referable, or not hashable
        return _beams_own(dofn)
    return set(state), set(timers)


def install() -> None:
    """Every caller of userstate.get_dofn_specs (module attribute) in this process uses the memo."""
    userstate.get_dofn_specs = get_dofn_specs
