.PHONY: demo test lint docs bench

demo:
	scripts/bootstrap
	.venv/bin/python -m example_service.demo

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy fastapi_kc_m2m example_service
	.venv/bin/lint-imports

docs:
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir site

test:
	scripts/bootstrap --with-node
	$(MAKE) lint
	$(MAKE) docs
	.venv/bin/python -m pytest

bench:
	scripts/bootstrap --with-node
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || true
	command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind) || true
	.venv/bin/python benchmarks/verify.py
	.venv/bin/python benchmarks/e2e.py
	.venv/bin/python benchmarks/serve_profile.py $$(command -v valgrind >/dev/null && echo --callgrind)
	.venv/bin/python benchmarks/introspection.py
	.venv/bin/python benchmarks/memory.py
	.venv/bin/python benchmarks/dpop.py
	.venv/bin/python benchmarks/redis_store.py
	.venv/bin/python benchmarks/metrics.py
