"""Builders shared by the tests of several parts (small data, configs, servers, golden digests).

`tests/` is on the path for every test (`pythonpath` in pyproject.toml), so a test anywhere under
`tests/` imports them as `from helpers.train import feature_set`.
"""
