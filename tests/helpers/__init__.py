"""What the tests share, in one place: signed Slack requests, the config builder, git remotes,
a Redis of a test's own, the running bot and the steps scenarios take.

Only plain functions and classes live here; the pytest fixtures built from them are in
tests/conftest.py. No test module imports another: what two need is moved here.
"""
