# The two commands: `make demo` and `make test`. Everything else is their set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
COSE_VENV := .venv-cose
STAMP := $(VENV)/.installed

.PHONY: demo test build bench clean dist deps-build deps-test

# Debian packages first (tools/system-deps): installed when root or `sudo -n`
# allows, else one line naming the apt-get command and a stop.
deps-build:
	@bash tools/system-deps build $(PYTHON)
deps-test:
	@bash tools/system-deps test $(PYTHON)

$(STAMP): pyproject.toml setup.py | deps-build
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

# MicroPython stubs for type-checking firmware/: each package has its own
# `machine`, so each gets a directory of its own.
STUBS := .stubs/rp2/machine.pyi .stubs/esp32/machine.pyi
.stubs/rp2/machine.pyi: | $(STAMP)
	$(BIN)/python -m pip install -q --target .stubs/rp2 micropython-rp2-rpi-pico-w-stubs
.stubs/esp32/machine.pyi: | $(STAMP)
	$(BIN)/python -m pip install -q --target .stubs/esp32 micropython-esp32-stubs

build: $(STAMP)
	HUAICO_BUILD_EXT=$${HUAICO_BUILD_EXT-1} $(BIN)/python setup.py -q build_ext --inplace

test: deps-test build $(COSE_VENV)/.installed $(STUBS)
	HUAICO_COSE_PYTHON=$(COSE_VENV)/bin/python PYTEST_PYTHON=$(BIN)/python bash tools/test-lanes $(PYTEST_ARGS)

demo: build
	$(BIN)/huaico demo

# A wheel (with the compiled decoder, for this machine's Python and CPU) and
# an sdist that builds one anywhere with a C compiler; `pipx install
# dist/huaico-*.whl` gives the `huaico` command. DIST=elsewhere to put them there.
DIST ?= dist
dist: $(STAMP)
	rm -rf build/lib* build/bdist*
	HUAICO_BUILD_EXT=1 $(BIN)/pip wheel -q --no-deps --no-build-isolation -w $(DIST) .
	$(BIN)/python setup.py -q sdist -d $(DIST)
	@ls -1 $(DIST)/huaico-*

bench: build
	$(BIN)/python bench/decode.py

clean:
	rm -rf $(VENV) $(COSE_VENV) .stubs build dist *.egg-info protocol/*.so protocol/_frame_c.c
