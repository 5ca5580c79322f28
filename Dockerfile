# One image for every Meterline role; the compose file picks the role per service.
#
# The image holds what the package declares and nothing picked by hand: the
# build stage copies the whole context (filtered by .dockerignore) and builds
# the wheel; the runtime stage installs that wheel alone. A stage folder added
# to the package is in the wheel without an edit here, and one the package
# lacks fails at build time, not at import in production.
# tests/test_packaging.py runs this build stage's `pip wheel` command on a clean
# clone filtered by .dockerignore and imports every module from the result.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
# (no --no-cache-dir here: this stage is discarded, so pip's cache costs the image
# nothing, and the test running this command reuses the machine's cache)
RUN pip wheel --no-deps --wheel-dir dist .

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /src/dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
COPY meterline.yaml /etc/meterline/meterline.yaml
ENV METERLINE_CONFIG=/etc/meterline/meterline.yaml
ENTRYPOINT ["meterline"]
