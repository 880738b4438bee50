# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format migrations-check bench lock browser messages clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: install
	scripts/run.sh

test: install browser
	$(BIN)/python -m pytest

# The end-to-end tests drive Debian's Chromium; install it when we may (root with apt).
browser:
	@scripts/ensure-chromium.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrations-check: install
	$(BIN)/python manage.py makemigrations --check --dry-run

# Refresh the Turkish catalogue (locale/tr/LC_MESSAGES/django.po, the single source) from the code,
# check it, compile it. Fails on a user-facing string that is untranslated or fuzzy.
messages: install
	$(BIN)/python manage.py makemessages -l tr --no-obsolete --ignore=.venv --ignore=sandbox --ignore=tests --ignore=bench -v0
	$(BIN)/python locale/check.py
	$(BIN)/python manage.py compilemessages --ignore=.venv -v0

bench: install
	$(BIN)/python bench/bulk_push.py
	$(BIN)/python bench/bill_queries.py
	$(BIN)/python bench/crash_safety.py
	$(BIN)/python bench/sync_scale.py

# Re-pin the whole dependency tree from requirements*.in.
lock:
	rm -rf /tmp/fb-lock && $(PYTHON) -m venv /tmp/fb-lock
	/tmp/fb-lock/bin/pip install --quiet -r requirements.in
	(echo "# Generated from requirements.in by 'make lock'; do not edit by hand."; /tmp/fb-lock/bin/pip freeze) > requirements.txt
	/tmp/fb-lock/bin/pip install --quiet -r requirements-dev.in
	(echo "# Generated from requirements-dev.in by 'make lock'; do not edit by hand."; echo "-r requirements.txt"; \
	  /tmp/fb-lock/bin/pip freeze | grep -v -x -F -f requirements.txt) > requirements-dev.txt

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles
