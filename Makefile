# Fresh machine: `make demo` then `make test`. Both create .venv on first use.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-bare demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,onnx,serve,video,report,cityscapes,pretrained]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

# The tests that read ../shared/data, run again on the generated stand-in (a clone without it)
test-bare: $(STAMP)
	empty=$$(mktemp -d) && MASKRCNN_SHARED_DATA=$$empty $(PY) -m pytest tests -m shared_data; \
	status=$$?; rmdir $$empty; exit $$status

demo: $(STAMP)
	$(PY) -m maskrcnn demo --out runs/demo

clean:
	rm -rf runs build *.egg-info
