"""bridge.metrics: one registry, stable names, closed label sets, bounded room series."""

from __future__ import annotations

import re

import pytest
from prometheus_client import generate_latest

from bridge import metrics

PRODUCT_METRICS = {
    "sipmuc_build": "info",  # exposed as sipmuc_build_info
    "sipmuc_calls": "counter",
    "sipmuc_calls_rejected": "counter",
    "sipmuc_worker_clock_late_ticks": "counter",
    "sipmuc_worker_clock_skipped_ticks": "counter",
    "sipmuc_worker_clock_max_lateness_seconds": "gauge",
    "sipmuc_jitter_buffer_frames": "counter",
    "sipmuc_jitter_buffer_delay_seconds": "gauge",
    "sipmuc_worker_frame_errors": "counter",
    "sipmuc_realtime_scheduling": "gauge",
    "sipmuc_legs_active": "gauge",
    "sipmuc_legs_ended": "counter",
    "sipmuc_room_legs": "gauge",
    "sipmuc_rooms_active": "gauge",
    "sipmuc_workers_up": "gauge",
    "sipmuc_worker_slots": "gauge",
    "sipmuc_worker_restarts": "counter",
    "sipmuc_calls_limited": "counter",
    "sipmuc_mixer_tick_seconds": "histogram",
    "sipmuc_mixer_late_frames": "counter",
    "sipmuc_xmpp_connected": "gauge",
    "sipmuc_muc_reconnects": "counter",
    "sipmuc_mirrored_actions": "counter",
    "sipmuc_errors": "counter",
    "sipmuc_ready": "gauge",
    "sipmuc_readiness_check": "gauge",
    "sipmuc_draining": "gauge",
}


def product_families() -> dict[str, str]:
    return {
        family.name: family.type
        for family in metrics.REGISTRY.collect()
        if family.name.startswith("sipmuc_")
    }


def test_the_registry_holds_exactly_the_documented_metrics() -> None:
    assert product_families() == PRODUCT_METRICS


def test_every_metric_is_explained() -> None:
    for family in metrics.REGISTRY.collect():
        if family.name.startswith("sipmuc_"):
            assert family.documentation.strip().endswith("."), family.name


def test_closed_label_sets_exist_at_zero_before_any_event() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    for outcome in metrics.CALL_OUTCOMES:
        assert f'sipmuc_calls_total{{outcome="{outcome}"}}' in text
    for reason in metrics.REJECT_REASONS:
        assert f'sipmuc_calls_rejected_total{{reason="{reason}"}}' in text
    for cause in metrics.LATE_FRAME_CAUSES:
        assert f'sipmuc_mixer_late_frames_total{{cause="{cause}"}}' in text
    mirrored = re.findall(r"^sipmuc_mirrored_actions_total\{", text, re.MULTILINE)
    assert len(mirrored) == len(metrics.MIRROR_KINDS) * len(metrics.DIRECTIONS)


def test_room_series_disappear_when_the_room_empties() -> None:
    base = metrics.ROOMS_ACTIVE._value.get()  # rooms of nodes run earlier in this process
    metrics.set_room_legs("room1@conference.example", 3)
    metrics.set_room_legs("room2@conference.example", 1)
    assert metrics.ROOMS_ACTIVE._value.get() == base + 2
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'sipmuc_room_legs{room="room1@conference.example"} 3.0' in text

    metrics.set_room_legs("room1@conference.example", 0)
    metrics.set_room_legs("never-seen@conference.example", 0)
    text = generate_latest(metrics.REGISTRY).decode()
    assert "room1@conference.example" not in text
    assert metrics.ROOMS_ACTIVE._value.get() == base + 1
    metrics.set_room_legs("room2@conference.example", 0)
    assert metrics.ROOMS_ACTIVE._value.get() == base
    with pytest.raises(ValueError, match="negative"):
        metrics.set_room_legs("room3@conference.example", -1)


def test_errors_are_counted_by_subsystem_and_event() -> None:
    before = metrics.ERRORS.labels(subsystem="redis", event="redis.unavailable")._value.get()
    metrics.count_error("redis", "redis.unavailable")
    after = metrics.ERRORS.labels(subsystem="redis", event="redis.unavailable")._value.get()
    assert after == before + 1
    with pytest.raises(ValueError, match="unknown subsystem"):
        metrics.count_error("pbx", "x")  # type: ignore[arg-type]
