"""The commands on top of the pipeline: the `clickstream` CLI, schema bootstrap, inspect and the
local development stack. Nothing in the pipeline imports this package."""
