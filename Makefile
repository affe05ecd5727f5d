# robot_platform: the two commands are `make demo` and `make test`; both bootstrap what they need.
SHELL := /bin/bash
ROBOTS ?= 3

.PHONY: setup build test test-long demo images lint format clean
setup:            ## system packages (apt, when usable), .venv with ROS 2 Jazzy wheels, pinned deps
	@scripts/bootstrap.sh

build: setup      ## colcon build of src/ into install/
	@scripts/build.sh

test: build       ## colcon test + system tests in test/; fails on any failure or leftover process
	@scripts/test.sh

test-long: build  ## the minutes-long system tests in test/long/ (CI runs them after `make test`)
	@scripts/test.sh long

demo: build       ## control server + $(ROBOTS) simulated robots; Ctrl-C stops everything
	@bin/robot-platform demo --robots $(ROBOTS)

images: setup     ## robot + control container images from a local Debian base (podman), then smoke starts
	@scripts/build_images.sh

lint: setup
	@. scripts/env.sh && ruff check src test bench launch scripts

format: setup
	@. scripts/env.sh && ruff format src test bench launch scripts

clean:            ## remove build outputs (keeps .venv)
	rm -rf build install log .state/demo
