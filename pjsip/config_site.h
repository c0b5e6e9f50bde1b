/*
 * config_site.h of the sipmuc bridge's own PJSIP build (scripts/build-pjsip copies it to
 * pjlib/include/pj/config_site.h before configure). Part of the build cache key: any change
 * here rebuilds. Why each value: docs/pjsip.md.
 */

/* A worker process carries up to this many calls (stock PJSIP: 4). The setting
 * sip.calls_per_worker chooses how many are used; this is only the ceiling. */
#define PJSUA_MAX_CALLS                 256

/* Every call holds a FramePort and a stream port in pjmedia's conference bridge. */
#define PJSUA_MAX_CONF_PORTS            (2 * PJSUA_MAX_CALLS + 8)

/* epoll ioqueue: 2 sockets (RTP, RTCP) per call plus the SIP transports and TCP/TLS
 * connections of the callers (stock PJSIP: 64, which is select()'s limit). */
#define PJ_IOQUEUE_MAX_HANDLES          1024

/* One account per worker; pjsua's default of 8 is plenty. Presence is not served
 * (bridge.sip.pj.BridgeAccount refuses presence SUBSCRIBEs): no buddies needed. */
#define PJSUA_MAX_BUDDIES               16

/* The bridge has no sound device, no video and plays no files: keep the pools small. */
#define PJSUA_MAX_PLAYERS               4
#define PJSUA_MAX_RECORDERS             4

/* Opus: 48 kHz legs in the mixer (docs/mixer.md); complexity 5 is libopus' own
 * speed/quality middle, kept explicit because it sets the CPU cost per call. */
#define PJMEDIA_CODEC_OPUS_DEFAULT_SAMPLE_RATE  48000
#define PJMEDIA_CODEC_OPUS_DEFAULT_COMPLEXITY   5

/* SRTP (libsrtp2, --with-external-srtp) with SDES keys (RFC 4568) only: DTLS-SRTP is for
 * WebRTC peers, which we do not serve. */
#define PJMEDIA_SRTP_HAS_DTLS           0

/* epoll: handle up to 64 ready sockets per poll (stock: 16). A worker polls from its Python
 * main loop (threadCnt 0), and RTP shares SIP's ioqueue: with 100 calls, 5 000 packets/s
 * would otherwise take a loop iteration per 16 packets. */
#define PJ_IOQUEUE_MAX_EVENTS_IN_SINGLE_POLL    64

/* As the SDP answerer, pick the first codec of *our* priority list that the caller offers
 * (opus, G.722, PCMU, PCMA: bridge.sip.codecs), not the caller's first choice: a phone that
 * lists PCMU first but also offers opus gets opus. */
#define PJMEDIA_SDP_NEG_PREFER_REMOTE_CODEC_ORDER   0
