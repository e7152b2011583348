# claude-matrix-bot: one image for every entry point.
#   default            functions-framework serving the `watch` target on $PORT (8080)
#   claude-matrix-bot run          one in-process cycle (CronJob fallback)
#   claude-matrix-bot-trigger      the trigger shim (CronJob -> Knative Service)
# Build: scripts/build-push.sh (multi-arch, provenance + SBOM).

# Both stages must use the same base: the final stage reuses the builder's virtualenv,
# whose scripts point at this interpreter path.
# Pinned by digest (a tag can be re-pushed, a digest cannot); to refresh it, read the
# multi-arch index digest of the tag, e.g. `docker buildx imagetools inspect
# python:3.11.11-slim-bookworm` (or `crane digest`, `skopeo inspect`), and replace both.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

FROM ${PYTHON_IMAGE} AS builder
# Compilers only here, for any dependency without a wheel on the target platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, exactly as locked: every file checked against its hash, nothing
# resolved on build day (`make lock` refreshes requirements.lock).
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY function/ function/
COPY shim/ shim/
# A regular (non-editable) install: the final stage carries no source tree but main.py.
# No index, no deps, no build isolation: only what the lock installed is used.
RUN /opt/venv/bin/pip install --no-index --no-deps --no-build-isolation ".[all]" \
 && /opt/venv/bin/pip check
# What the image leaves out of the locked install (issue 25; ≤ 450 MB on this base): the
# installers, every tests folder, C sources, and the parts of dependencies the bot never
# imports, found by tracing every file its entry points open (`make image-test`, which then
# runs each of them on this very result): the asyncio Kubernetes client (it uses the
# synchronous one), botocore's models of AWS services other than S3 and the credential
# services (STS, SSO, sign-in), fontTools beyond what matplotlib's PNG drawing imports
# (agl, misc), numpy's build tools (f2py, distutils), PyCryptodome's self-tests and
# public-key half (nio uses its AES, hashes and PBKDF2), Pillow's AVIF codec (an optional
# plugin: without it, AVIF is reported unsupported), matplotlib's sample data and web backend.
RUN /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
 && cd /opt/venv/lib/python3*/site-packages \
 && find . -depth -type d -name tests -prune -exec rm -rf {} + \
 && find . -type f \( -name '*.c' -o -name '*.pyx' \) -delete \
 && rm -rf kubernetes/aio numpy/f2py numpy/distutils Crypto/SelfTest \
           Crypto/PublicKey Crypto/Math PIL/_avif.* pillow.libs/libavif-* \
           matplotlib/mpl-data/sample_data matplotlib/backends/web_backend \
 && find botocore/data -mindepth 1 -maxdepth 1 -type d \
         ! -name s3 ! -name sts ! -name sso ! -name sso-oidc ! -name signin -exec rm -rf {} + \
 && find fontTools -mindepth 1 -maxdepth 1 \
         ! -name __init__.py ! -name agl.py ! -name misc ! -name __pycache__ -exec rm -rf {} + \
 && ! ls /opt/venv/bin/pip* 2>/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="claude-matrix-bot" \
      org.opencontainers.image.description="Claude subscription usage alerts into an end-to-end-encrypted Matrix room" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric uid/gid (65532, as in distroless "nonroot") so Kubernetes'
# runAsNonRoot can verify it and the manifests can name it.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin nonroot
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY function/main.py /app/function/main.py
# Charts are drawn by `python -OO -m claude_matrix_bot.chart_drawing` (its peak RSS is 5 MB
# lower without docstrings), which loads `.opt-2.pyc` bytecode that pip does not write.
# The root filesystem is read-only at run time, so one chart is drawn here with the child's
# flags: it writes the bytecode of exactly the modules the drawing child loads.
RUN echo '{"title": "build", "samples": [[0, 5.0], [3600, 9.5], [7200, 14.0]], "window_start": 0, "resets_at": 604800, "now": 7200, "thresholds": [50, 80], "fit": [3600, 9.5, 86400], "limit_hit_at": 90000}' \
  | MPLCONFIGDIR=/tmp/mpl-build /opt/venv/bin/python -OO -m claude_matrix_bot.chart_drawing > /dev/null \
 && rm -rf /tmp/mpl-build
# The root filesystem is read-only in the cluster: no .pyc writes, HOME on the /tmp emptyDir.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PORT=8080
USER 65532:65532
EXPOSE 8080
# functions-framework's app on gunicorn with request limits and a request-read deadline
# (function/claude_matrix_bot/serve.py; functions-framework's own CLI leaves the request
# line unlimited). No --port: it reads $PORT, which Knative sets for the container.
CMD ["python", "-m", "claude_matrix_bot.serve", "--source", "/app/function/main.py", "--target", "watch"]
