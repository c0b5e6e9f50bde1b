# syntax=docker/dockerfile:1.7
# sipmuc-bridge images. Targets:
#   runtime  (default, last stage) - the bridge; what charts/sipmuc-bridge runs
#   kamailio                       - the optional SIP front (Debian's kamailio package)
#
#   docker build -t ghcr.io/sipmuc/sipmuc-bridge:0.1.0 .
#   docker build --target kamailio -t ghcr.io/sipmuc/sipmuc-bridge:0.1.0-kamailio .
#
# Base images are pinned by tag here; pin them by digest in CI (PYTHON_IMAGE=python:…@sha256:…).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG DEBIAN_IMAGE=debian:12.8-slim

# --- build: the virtualenv with the bridge and its dependencies ----------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/sipmuc/venv \
 && /opt/sipmuc/venv/bin/pip install pip==24.3.1 setuptools==75.6.0 wheel==0.45.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY mixer ./mixer
RUN /opt/sipmuc/venv/bin/pip install . \
 && /opt/sipmuc/venv/bin/python -m compileall -q /opt/sipmuc/venv

# --- kamailio: SIP front that follows 302 for clients that do not --------------------------------
FROM ${DEBIAN_IMAGE} AS kamailio
ARG KAMAILIO_VERSION=5.6.3-2
RUN apt-get update \
 && apt-get install -y --no-install-recommends "kamailio=${KAMAILIO_VERSION}" \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sipmuc \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin sipmuc
USER 10001:10001
EXPOSE 5060/udp 5060/tcp
ENTRYPOINT ["kamailio", "-DD", "-E", "-Y", "/run/kamailio", "-f", "/etc/kamailio/kamailio.cfg"]

# --- runtime: the bridge --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sipmuc-bridge" \
      org.opencontainers.image.description="SIP to XMPP MUC conference bridge"
RUN groupadd --system --gid 10001 sipmuc \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sipmuc --shell /usr/sbin/nologin sipmuc \
 && install -d -o 10001 -g 10001 /var/lib/sipmuc
COPY --from=build /opt/sipmuc/venv /opt/sipmuc/venv
# python-rt: a copy of the interpreter carrying the cap_sys_nice file capability, so the mixer
# and pjmedia clock threads may use SCHED_FIFO as a non-root user. The chart runs it only when
# realtime.enabled (it adds SYS_NICE to the bounding set and allows privilege escalation, since
# file capabilities are ignored under no_new_privs); otherwise it runs the plain interpreter,
# because exec of a +ep file whose capability is outside the bounding set fails with EPERM.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && cp "$(readlink -f /opt/sipmuc/venv/bin/python)" /opt/sipmuc/venv/bin/python-rt \
 && setcap cap_sys_nice+ep /opt/sipmuc/venv/bin/python-rt \
 && apt-get purge -y libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/sipmuc/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIPMUC_LOG__FORMAT=json
WORKDIR /var/lib/sipmuc
USER 10001:10001
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp
ENTRYPOINT ["/opt/sipmuc/venv/bin/python", "-m", "bridge"]
CMD ["run"]
