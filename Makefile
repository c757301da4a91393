.PHONY: serve test bench lint
serve: ; ./dev serve
test: ; ./dev test
bench: ; ./dev bench
lint: ; ./dev lint
