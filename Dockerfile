# syntax=docker/dockerfile:1.7
# sipmuc-bridge images. Targets:
#   runtime  (default, last stage) - the bridge; what charts/sipmuc-bridge runs
#   kamailio                       - the optional SIP front (Debian's kamailio package)
#
#   docker build -t registry.example.org/sipmuc-bridge:0.1.0 .
#   docker build --target kamailio -t registry.example.org/sipmuc-bridge:0.1.0-kamailio .
#
# PJSIP is built from the pinned, verified pjproject release by scripts/build-pjsip (as
# scripts/bootstrap does; docs/pjsip.md), which takes ~7 minutes on 2 cores. Two optional
# build contexts make it faster, and change nothing in the result:
#   --build-context pjsip-source=<dir with pjproject-2.17.tar.gz>  (else it is downloaded
#                                                                  from GitHub and verified)
#   --build-context pjsip-cache=<scripts/build-pjsip's cache dir>   (a cache hit skips the build)
# Python packages come from requirements/runtime.txt, every file checked against its hash;
# the index is pip's own configuration of the build machine (see docs/operations.md, "Build
# the images"), never written here.
#
# One Debian base for every stage (Python 3.11, OpenSSL 3, libopus, libsrtp2 from Debian).
# Pinned by tag here; pin it by digest in CI: --build-arg DEBIAN_IMAGE=debian:12-slim@sha256:…
ARG DEBIAN_IMAGE=docker.io/library/debian:12-slim

# --- optional build contexts (empty unless given with --build-context) ----------------------
FROM scratch AS pjsip-source
FROM scratch AS pjsip-cache

# --- build: the virtualenv with PJSIP, the locked dependencies and the bridge ------------------
FROM ${DEBIAN_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev build-essential pkg-config swig \
      libssl-dev libopus-dev libsrtp2-dev uuid-dev ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/sipmuc/venv
WORKDIR /src
COPY requirements/runtime.txt requirements/runtime.txt
RUN /opt/sipmuc/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt
COPY pjsip pjsip
COPY scripts/build-pjsip scripts/build-pjsip
RUN --mount=type=bind,from=pjsip-source,target=/mnt/pjsip-source \
    --mount=type=bind,from=pjsip-cache,target=/mnt/pjsip-cache,rw \
    set -eu; \
    source=""; \
    if [ -f /mnt/pjsip-source/pjproject-2.17.tar.gz ]; then \
        source="--tarball /mnt/pjsip-source/pjproject-2.17.tar.gz"; \
    else \
        source="--download"; \
    fi; \
    cache=/var/tmp/pjsip-cache; \
    if [ -n "$(ls -A /mnt/pjsip-cache 2>/dev/null)" ]; then cache=/mnt/pjsip-cache; fi; \
    scripts/build-pjsip --python /opt/sipmuc/venv/bin/python --cache-dir "$cache" $source; \
    rm -rf /var/tmp/pjsip-cache
COPY pyproject.toml README.md ./
COPY bridge bridge
COPY mixer mixer
RUN /opt/sipmuc/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/sipmuc/venv/bin/pip check \
 && /opt/sipmuc/venv/bin/python -m compileall -q /opt/sipmuc/venv

# --- kamailio: SIP front that follows 302 for clients that do not --------------------------------
FROM ${DEBIAN_IMAGE} AS kamailio
ARG KAMAILIO_VERSION=5.6.3-2
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "kamailio=${KAMAILIO_VERSION}" \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sipmuc \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin sipmuc \
 && find / -xdev -type f -perm /6000 -exec chmod a-s {} +
USER 10001:10001
EXPOSE 5060/udp 5060/tcp
ENTRYPOINT ["kamailio", "-DD", "-E", "-Y", "/run/kamailio", "-f", "/etc/kamailio/kamailio.cfg"]

# --- runtime: the bridge --------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sipmuc-bridge" \
      org.opencontainers.image.description="SIP to XMPP MUC conference bridge" \
      org.opencontainers.image.licenses="GPL-2.0-or-later"
# Shared libraries the PJSIP build links (docs/pjsip.md). setpriv (util-linux, Essential)
# starts the bridge with CAP_SYS_NICE as uid 10001 when the chart enables real-time scheduling.
# No setuid/setgid binary is left in the image (su, mount, passwd, …: nothing here needs them),
# and no file carries file capabilities.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 libssl3 libopus0 libsrtp2-1 libuuid1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sipmuc \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sipmuc --shell /usr/sbin/nologin sipmuc \
 && install -d -o 10001 -g 10001 /var/lib/sipmuc \
 && find / -xdev -type f -perm /6000 -exec chmod a-s {} +
COPY --from=build /opt/sipmuc/venv /opt/sipmuc/venv
ENV PATH=/opt/sipmuc/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIPMUC_LOG__FORMAT=json
WORKDIR /var/lib/sipmuc
USER 10001:10001
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp
ENTRYPOINT ["/opt/sipmuc/venv/bin/python", "-m", "bridge"]
CMD ["run"]
