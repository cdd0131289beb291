.PHONY: demo test lint bench

demo:
	scripts/bootstrap
	.venv/bin/python -m fastapi_kc_m2m.demo

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy fastapi_kc_m2m

test:
	scripts/bootstrap
	$(MAKE) lint
	.venv/bin/python -m pytest

bench:
	scripts/bootstrap
	.venv/bin/python benchmarks/verify.py
