# One image for every Meterline role; the compose file picks the role per service.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY meterline ./meterline
COPY schemas ./schemas
COPY ingest ./ingest
COPY processors ./processors
COPY sinks ./sinks
COPY reports ./reports
RUN pip install --no-cache-dir .
COPY meterline.yaml /etc/meterline/meterline.yaml
ENV METERLINE_CONFIG=/etc/meterline/meterline.yaml
ENTRYPOINT ["meterline"]
