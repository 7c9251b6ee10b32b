"""Keras training on the balanced shards (python -m training.fit).

Not built yet: it is the subject of issue 4. The package exists so that setup.py
ships it to workers alongside pipelines/ and transforms/ once it lands.
"""
