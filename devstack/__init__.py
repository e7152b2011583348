"""The development stack: what tests, `make demo` and `make bench` run the bot against.

Not shipped (the image copies only function/ and shim/). Everything here listens on
127.0.0.1 only:
- `devstack.fakes.anthropic`: the usage and OAuth token endpoints (loopback fake);
- `devstack.fakes.kube_apiserver`: the Secrets part of the Kubernetes API (loopback fake);
- `devstack.synapse`: a real, throwaway Synapse homeserver;
- `devstack.matrix_recipient`: a decrypting recipient device (matrix-nio);
- `devstack.payloads`: usage answers shaped like the real endpoint's;
- `devstack.bot`: the bot's environment and running its CLI in a subprocess;
- `devstack.stack`: one `Stack` of all of the above, as the demo, the bench and the
  Matrix tests use it.
"""
