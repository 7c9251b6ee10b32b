"""Setup file for Beam workers (the juliaset convention).

Dataflow and other remote runners stage this project with
``--setup_file ./setup.py``: the workers install it, so that ``pipelines``,
``transforms`` and ``training`` import there exactly as they do locally.
Metadata and dependencies live in pyproject.toml.
"""

import setuptools

setuptools.setup()
