# make demo: balance the embedded demo corpus, then a short training run.  make test: the tests.
# Both create .venv and install the project (with its test extra) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,jax,gcp,aws]'
	touch $(STAMP)

# The demo walks the whole path on 80x80 digit PNGs: balance (keeping 16x16 thumbnails as
# embeddings, with a test split nothing trains on); train InceptionV3's final layer on the
# images (random weights: no ImageNet download here, so it shows the path, not accuracy; it
# says so before it trains); train the final layer on the cached embeddings, where the
# F1-driven loop learns and the run ends with its test score; evaluate on test; predict.
demo: $(STAMP)
	$(BIN)/python -m pipelines.balance --keep_embeddings --test_fraction 0.15
	rm -rf demo/run-images demo/run-embeddings demo/predictions.*
	$(BIN)/python -m training.fit --data demo/balanced --output demo/run-images --inputs image \
	    --weights none --image_size 80 --epochs 2 --epoch_size 640 --batch_size 32 --verbose 2
	$(BIN)/python -m training.fit --data demo/balanced --output demo/run-embeddings --inputs vector \
	    --epochs 6 --epoch_size 2048 --batch_size 32 --verbose 0
	$(BIN)/python -m training.evaluate --run demo/run-embeddings --data demo/balanced --split test
	$(BIN)/python -m training.predict --run demo/run-embeddings --input demo/balanced --split test \
	    --output demo/predictions.parquet

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_balance --rows 1000000

clean:
	rm -rf $(VENV) demo .pytest_cache
