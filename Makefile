# Fresh machine: `make demo` then `make test`. Both create .venv on first use.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-bare demo docs docs-serve clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,onnx,serve,video,report,cityscapes,pretrained,docs,measure]'
	$(PY) -m pip install -q --no-deps -c constraints.txt lvis  # the LVIS API without its OpenCV
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

# The tests that read ../shared/data, run again on the generated stand-in (a clone without it)
test-bare: $(STAMP)
	empty=$$(mktemp -d) && MASKRCNN_SHARED_DATA=$$empty $(PY) -m pytest tests -m shared_data; \
	status=$$?; rmdir $$empty; exit $$status

# The documentation site into site/ (generated reference pages, benchmark tables from benchmarks/results/)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

demo: $(STAMP)
	$(PY) -m maskrcnn demo --out runs/demo

clean:
	rm -rf runs build site *.egg-info
