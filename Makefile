# `make train` and `make test` each build .venv when it is missing, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MNIST_NPZ ?= $(abspath $(wildcard ../shared/data/mnist.npz))
export MNIST_NPZ

.PHONY: train test lint bench notebook demo unseen-pairs study clean

$(BIN)/activate: requirements.txt requirements-dev.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/activate

train: $(BIN)/activate  ## train the model; writes model.zip, training_history.log, model_plot.png
	$(BIN)/python train.py $(ARGS)

test: $(BIN)/activate  ## run the test suite
	$(BIN)/python -m pytest $(ARGS)

lint: $(BIN)/activate  ## ruff: lint and formatting
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/activate  ## compare this model with the original project's architecture
	$(BIN)/python bench.py $(ARGS)

demo: $(BIN)/activate  ## draw a digit in the browser: http://127.0.0.1:7860
	$(BIN)/python demo.py $(ARGS)

unseen-pairs: $(BIN)/activate  ## does it add? train with (digit, addend) pairs withheld, score the unseen ones
	$(BIN)/python experiments/unseen_pairs.py $(ARGS)

study: $(BIN)/activate  ## which recipe choices help? arms x seeds, paired with the base by seed (hours)
	$(BIN)/python experiments/seeded_study.py $(ARGS)

notebook: $(BIN)/activate  ## execute the notebook in place, outputs included
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=1800 MNIST_Image_Classification_and_Summed_Output_Project.ipynb

clean:
	rm -rf checkpoints runs .pytest_cache .ruff_cache .hypothesis

# Mutation testing ([tool.mutmut] in pyproject.toml): mutmut copies the project into mutants/, plants one
# small bug at a time in data_creation.py, evaluate_func.py, helper_mnist.py, train.py and bench.py and reruns
# the unit tests that reach it (the fast ones: what trains is marked slow and left out);
# a bug no test notices survives. Each run starts afresh. Slow, so not part of `make test`.
.PHONY: mutants
mutants: $(BIN)/activate  ## mutation score of the unit tests (about half an hour on 2 cores)
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/mutmut results
