# One image for every Lifeline process; the command picks the role:
#   docker run IMAGE serve intake | serve payment | ... | simulator | console
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Notify prints notices as PDF letters with Debian's headless Chromium, the Chinese set in
# Debian's Noto CJK fonts (nothing is fetched at run time).
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

# Dependencies change less often than code: install them in their own layer
# (from pyproject.toml alone) so code edits do not reinstall everything.
COPY pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY lifeline ./lifeline
COPY services ./services
# Policy, calendar and region additions are configuration, read at run time (mount your own over them).
COPY config ./config
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --create-home --home-dir /home/lifeline lifeline \
 && mkdir -p /app/var \
 && chown lifeline:lifeline /app/var

# Never run as root. The data dir only holds SQLite files in embedded mode;
# with LIFELINE_DATABASE_URL set, the containers are stateless.
USER 10001:10001
ENV LIFELINE_DATA_DIR=/app/var \
    LIFELINE_HOST=0.0.0.0 \
    LIFELINE_POLICY_FILE=/app/config/policy.yaml \
    LIFELINE_BANK_CHANNELS_FILE=/app/config/bank-channels.yaml \
    LIFELINE_RISK_RULES_FILE=/app/config/risk-rules.yaml \
    LIFELINE_CALENDAR_DIR=/app/config/calendar \
    LIFELINE_REGIONS_DIR=/app/config/regions

EXPOSE 8000 8001 8002 8003 8004 8005 8009
ENTRYPOINT ["lifeline"]
CMD ["--help"]
