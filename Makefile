# The two commands: `make demo` and `make test`. Everything else is their set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
COSE_VENV := .venv-cose
STAMP := $(VENV)/.installed

.PHONY: demo test build bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel Cython
	HUAICO_BUILD_EXT=$${HUAICO_BUILD_EXT-1} $(BIN)/pip install -q --no-build-isolation -e '.[test]'
	touch $@

# pycose cannot decode anything beside cbor2 6.x (see shared FACTS), so the
# interoperability check runs in an environment of its own with cbor2 5.
$(COSE_VENV)/.installed:
	$(PYTHON) -m venv $(COSE_VENV)
	$(COSE_VENV)/bin/pip install -q 'pycose==1.1.*' 'cbor2>=5.6,<6'
	touch $@

build: $(STAMP)
	HUAICO_BUILD_EXT=$${HUAICO_BUILD_EXT-1} $(BIN)/python setup.py -q build_ext --inplace

test: build $(COSE_VENV)/.installed
	HUAICO_COSE_PYTHON=$(COSE_VENV)/bin/python $(BIN)/python -m pytest $(PYTEST_ARGS)

demo: build
	$(BIN)/huaico demo

bench: build
	$(BIN)/python bench/decode.py

clean:
	rm -rf $(VENV) $(COSE_VENV) build *.egg-info gateway/*.so gateway/_frame_c.c
