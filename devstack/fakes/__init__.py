"""Loopback fakes of the two APIs the tests cannot run for real: Anthropic's and Kubernetes'."""
