# The engine's worker. Point it at your Kafka with CPS_BROKER and give each
# worker its own CPS_DATA_DIR volume (RocksDB state is rebuilt from Kafka if lost).

# The wheel, built where npm is: its build fetches the dashboard's chart library (setup.py).
FROM python:3.11-slim AS wheel
RUN apt-get update && apt-get install -y --no-install-recommends npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CPS_DATA_DIR=/var/lib/cps CPS_WEB_HOST=0.0.0.0 CPS_WEB_PORT=6066

RUN useradd --system --create-home --home-dir /home/cps cps \
    && mkdir -p /var/lib/cps && chown cps /var/lib/cps

COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels

USER cps
WORKDIR /home/cps
VOLUME ["/var/lib/cps"]
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['CPS_WEB_PORT'], timeout=2)"
ENTRYPOINT ["cps"]
CMD ["worker"]
