"""The alert lifecycle: pending, firing, keep_firing_for, resolved, flapping, escalation."""

from __future__ import annotations

from typing import Any

import pytest

from models.alerts import Alert, fingerprint
from streams.core.rules.lifecycle import Lifecycle, Observation

T0 = 1_795_662_000_000
S = 1000
M = 60 * S
IP = ("203.0.113.7",)


def lifecycle(**changes: Any) -> Lifecycle:
    config: dict[str, Any] = {
        "rule": "brute_force",
        "kind": "count",
        "group_by": ["source.ip"],
        "severity": "warning",
        "for_ms": 0,
        "keep_firing_for_ms": 0,
        "flap_limit": 4,
        "flap_window_ms": 30 * M,
        "labels": {"team": "soc"},
        "summary_vi": "Dò mật khẩu từ {source.ip}: {value} lần trong {window}",
        "summary_en": "Brute force from {source.ip}: {value} failed logins in {window}",
        "window_ms": 5 * M,
    }
    config.update(changes)
    return Lifecycle(**config)


def on(at: int, group: tuple[Any, ...] = IP, **changes: Any) -> Observation:
    evidence: dict[str, Any] = {"value": 12.0, "threshold": 10.0, "count": 12}
    return Observation(group=group, active=True, at_ms=at, **(evidence | changes))


def off(at: int, group: tuple[Any, ...] = IP) -> Observation:
    return Observation(group=group, active=False, at_ms=at)


def states(alerts: list[Alert]) -> list[tuple[str, int, int | None]]:
    return [(a.state, a.starts_at_ms, a.ends_at_ms) for a in alerts]


def test_fires_on_the_first_observation_without_for() -> None:
    (alert,) = lifecycle().update(on(T0, event_ids=tuple(f"e-{i}" for i in range(15))))
    assert (alert.state, alert.starts_at_ms, alert.ends_at_ms) == ("firing", T0, None)
    assert alert.labels == {
        "alertname": "brute_force",
        "severity": "warning",
        "source.ip": "203.0.113.7",
        "team": "soc",
    }
    assert alert.fingerprint == fingerprint(alert.labels)
    assert alert.annotations == {
        "summary_vi": "Dò mật khẩu từ 203.0.113.7: 12 lần trong 5m",
        "summary_en": "Brute force from 203.0.113.7: 12 failed logins in 5m",
        "value": "12",
        "threshold": "10",
        "window": "5m",
    }
    assert alert.kind == "count" and not alert.flapping
    assert alert.evidence.count == 12 and alert.evidence.value == 12.0
    assert alert.evidence.event_ids == tuple(f"e-{i}" for i in range(10))


def test_does_not_fire_before_for() -> None:
    rule = lifecycle(for_ms=5 * M)
    assert rule.update(on(T0)) == []
    assert rule.update(on(T0 + 4 * M)) == []
    assert rule.advance(T0 + 5 * M - 1) == []
    assert states(rule.advance(T0 + 5 * M)) == [("firing", T0, None)]


def test_fires_from_an_observation_once_for_has_elapsed() -> None:
    rule = lifecycle(for_ms=5 * M)
    rule.update(on(T0))
    assert states(rule.update(on(T0 + 5 * M))) == [("firing", T0, None)]


def test_pending_is_cleared_by_an_inactive_observation() -> None:
    rule = lifecycle(for_ms=5 * M)
    rule.update(on(T0))
    assert rule.update(off(T0 + 2 * M)) == []
    assert rule.advance(T0 + 60 * M) == []
    assert len(rule) == 0
    rule.update(on(T0 + 61 * M))  # a new pending period: starts_at is the new one
    assert states(rule.advance(T0 + 66 * M)) == [("firing", T0 + 61 * M, None)]


def test_inactive_exactly_when_for_elapses_does_not_fire() -> None:
    rule = lifecycle(for_ms=5 * M)
    rule.update(on(T0))
    assert rule.update(off(T0 + 5 * M)) == []


def test_repeated_active_observations_write_nothing() -> None:
    rule = lifecycle()
    assert len(rule.update(on(T0))) == 1
    for minute in range(1, 30):
        assert rule.update(on(T0 + minute * M, value=12.0 + minute)) == []
        assert rule.advance(T0 + minute * M) == []


def test_resolves_with_ends_at() -> None:
    rule = lifecycle()
    (firing,) = rule.update(on(T0))
    rule.update(on(T0 + M, value=15.0))
    (resolved,) = rule.update(off(T0 + 3 * M))
    assert (resolved.state, resolved.starts_at_ms, resolved.ends_at_ms) == (
        "resolved", T0, T0 + 3 * M,
    )  # fmt: skip
    assert resolved.fingerprint == firing.fingerprint
    assert resolved.identity == f"{firing.fingerprint}|{T0}|resolved"
    assert resolved.annotations["value"] == "15"  # the last active observation's


def test_keep_firing_for_resolves_after_it() -> None:
    rule = lifecycle(keep_firing_for_ms=5 * M)
    rule.update(on(T0))
    assert rule.update(off(T0 + M)) == []
    assert rule.update(off(T0 + 2 * M)) == []  # the clock runs from the first inactive
    assert rule.advance(T0 + 6 * M - 1) == []
    assert states(rule.advance(T0 + 6 * M)) == [("resolved", T0, T0 + 6 * M)]


def test_keep_firing_for_continues_when_active_again_within_it() -> None:
    rule = lifecycle(keep_firing_for_ms=5 * M)
    rule.update(on(T0))
    rule.update(off(T0 + M))
    assert rule.update(on(T0 + 6 * M)) == []  # exactly at the deadline: still the same alert
    assert rule.advance(T0 + 20 * M) == []
    assert states(rule.update(off(T0 + 21 * M))) == []
    assert states(rule.advance(T0 + 26 * M)) == [("resolved", T0, T0 + 26 * M)]


def test_a_late_observation_first_lets_due_timers_act() -> None:
    rule = lifecycle(keep_firing_for_ms=5 * M)
    rule.update(on(T0))
    rule.update(off(T0 + M))
    assert states(rule.update(on(T0 + 10 * M))) == [
        ("resolved", T0, T0 + 6 * M),
        ("firing", T0 + 10 * M, None),
    ]


def test_flapping_guard_holds_then_releases() -> None:
    rule = lifecycle(flap_limit=4, flap_window_ms=30 * M)
    written: list[Alert] = []
    for cycle in range(3):
        written += rule.update(on(T0 + cycle * 2 * M))
        written += rule.update(off(T0 + cycle * 2 * M + M))
    # fire, resolve, fire, resolve, fire: the third resolve would be the 6th transition
    assert [(a.state, a.flapping) for a in written] == [
        ("firing", False), ("resolved", False),
        ("firing", False), ("resolved", False),
        ("firing", False), ("firing", True),
    ]  # fmt: skip
    held = written[-1]
    assert held.identity == written[-2].identity  # supersedes the first firing record
    # active and inactive again while held: nothing new is written
    assert rule.update(on(T0 + 10 * M)) == []
    assert rule.update(off(T0 + 11 * M)) == []
    assert rule.advance(T0 + 41 * M - 1) == []
    (resolved,) = rule.advance(T0 + 41 * M)  # inactive for the whole flap window
    assert (resolved.state, resolved.ends_at_ms, resolved.flapping) == (
        "resolved", T0 + 41 * M, True,
    )  # fmt: skip
    assert resolved.starts_at_ms == held.starts_at_ms == T0 + 4 * M


def test_flapping_guard_lets_go_when_the_condition_stays_active() -> None:
    rule = lifecycle(flap_limit=2, flap_window_ms=30 * M)
    rule.update(on(T0))
    rule.update(off(T0 + M))
    rule.update(on(T0 + 2 * M))
    (held,) = rule.update(off(T0 + 3 * M))
    assert held.flapping and held.state == "firing"
    rule.update(on(T0 + 4 * M))
    assert rule.advance(T0 + 34 * M - 1) == []
    (steady,) = rule.advance(T0 + 34 * M)
    assert (steady.state, steady.flapping, steady.identity) == ("firing", False, held.identity)


def test_flapping_guard_off_with_a_zero_window() -> None:
    rule = lifecycle(flap_limit=1, flap_window_ms=0)
    written = []
    for cycle in range(5):
        written += rule.update(on(T0 + cycle * 2 * M))
        written += rule.update(off(T0 + cycle * 2 * M + M))
    assert [a.state for a in written] == ["firing", "resolved"] * 5
    assert len(rule) == 0


def test_escalation_while_firing_resolves_the_old_and_fires_the_new_at_once() -> None:
    rule = lifecycle(rule="aqi_high", kind="threshold", for_ms=10 * M)
    rule.update(on(T0, band="poor"))
    (warning,) = rule.advance(T0 + 10 * M)
    old, new = rule.update(on(T0 + 12 * M, severity="critical", band="bad", value=180.0))
    assert (old.state, old.fingerprint, old.ends_at_ms) == (
        "resolved", warning.fingerprint, T0 + 12 * M,
    )  # fmt: skip
    assert old.labels["severity"] == "warning" and old.labels["band"] == "poor"
    assert old.annotations["value"] == "12"  # the old alert's own evidence
    assert (new.state, new.starts_at_ms) == ("firing", T0 + 12 * M)
    assert new.labels["severity"] == "critical" and new.labels["band"] == "bad"
    assert new.fingerprint != warning.fingerprint
    # and back down
    old, new = rule.update(on(T0 + 20 * M, band="poor"))
    assert (old.state, old.labels["severity"]) == ("resolved", "critical")
    assert (new.state, new.fingerprint) == ("firing", warning.fingerprint)


def test_escalation_while_pending_keeps_the_clock() -> None:
    rule = lifecycle(for_ms=10 * M)
    rule.update(on(T0))
    assert rule.update(on(T0 + 5 * M, severity="critical")) == []
    (alert,) = rule.advance(T0 + 10 * M)
    assert (alert.starts_at_ms, alert.labels["severity"]) == (T0, "critical")


def test_groups_are_independent() -> None:
    rule = lifecycle()
    a = rule.update(on(T0, group=("10.0.0.1",)))
    b = rule.update(on(T0, group=("10.0.0.2",)))
    assert a[0].fingerprint != b[0].fingerprint
    assert states(rule.update(off(T0 + M, group=("10.0.0.1",)))) == [("resolved", T0, T0 + M)]
    assert rule.update(on(T0 + M, group=("10.0.0.2",))) == []


def test_inactive_observation_of_an_unknown_group_keeps_nothing() -> None:
    rule = lifecycle()
    assert rule.update(off(T0)) == []
    assert len(rule) == 0


def test_a_group_of_the_wrong_size_is_a_bug() -> None:
    with pytest.raises(ValueError, match="group_by"):
        lifecycle().update(on(T0, group=("a", "b")))


def test_state_is_bounded() -> None:
    rule = lifecycle(keep_firing_for_ms=M, flap_window_ms=30 * M)
    written = []
    for i in range(1000):
        group = (f"10.0.{i // 256}.{i % 256}",)
        written += rule.update(on(T0 + i, group=group))
        written += rule.update(off(T0 + M + i, group=group))
    written += rule.advance(T0 + 3 * M)
    assert sorted(a.state for a in written) == ["firing"] * 1000 + ["resolved"] * 1000
    assert 0 < len(rule) <= 1000  # the flapping guard still remembers them
    assert rule.advance(T0 + 2 * M + 30 * M + 1000) == []
    assert len(rule) == 0
    assert len(rule._heap) <= 64  # superseded timers do not pile up either


def scenario(rule: Lifecycle, start: int = 0, stop: int | None = None) -> list[Alert]:
    """A run over three groups (pending, escalation, keep_firing_for, a flapping hold),
    from step `start` to before step `stop`: the records written."""
    steps: list[tuple[str, Any]] = [
        ("update", on(T0, group=("a",))),
        ("update", on(T0, group=("b",))),
        ("update", on(T0 + M, group=("c",), severity="critical")),
        ("advance", T0 + 4 * M),
        ("update", off(T0 + 5 * M, group=("b",))),
        ("advance", T0 + 6 * M),
        ("update", on(T0 + 7 * M, group=("b",), band="high")),
        ("update", off(T0 + 8 * M, group=("a",))),
        ("advance", T0 + 12 * M),
        ("update", on(T0 + 13 * M, group=("a",))),
        ("update", off(T0 + 14 * M, group=("c",))),
        ("advance", T0 + 40 * M),
        ("update", off(T0 + 41 * M, group=("a",))),
        ("update", off(T0 + 41 * M, group=("b",))),
        ("advance", T0 + 50 * M),  # a is held by the flapping guard from 43
        ("advance", T0 + 120 * M),
    ]
    out: list[Alert] = []
    for action, arg in steps[start:stop]:
        out += rule.update(arg) if action == "update" else rule.advance(arg)
    return out


def config() -> dict[str, Any]:
    return {"for_ms": 3 * M, "keep_firing_for_ms": 2 * M, "flap_limit": 2, "flap_window_ms": 60 * M}


def test_identities_are_deterministic() -> None:
    first = scenario(lifecycle(**config()))
    second = scenario(lifecycle(**config()))
    assert first == second
    assert [a.to_json() for a in first] == [a.to_json() for a in second]
    assert len({a.identity for a in first}) == 10
    assert any(a.flapping for a in first)


@pytest.mark.parametrize("cut", range(1, 16))
def test_snapshot_restore_continues_the_same(cut: int) -> None:
    """Cuts fall mid-pending (1-3), mid-firing, in keep_firing_for (5, 13), held (15)."""
    whole = scenario(lifecycle(**config()))
    before = lifecycle(**config())
    head = scenario(before, 0, cut)
    after = lifecycle(**config())
    after.restore(before.snapshot())
    assert after.snapshot() == before.snapshot()
    assert head + scenario(after, cut) == whole


def test_snapshot_mid_pending_and_mid_firing() -> None:
    rule = lifecycle(for_ms=5 * M, keep_firing_for_ms=5 * M)
    rule.update(on(T0, group=("p",)))
    rule.update(on(T0, group=("f",)))
    rule.advance(T0 + 5 * M)
    rule.update(on(T0 + 6 * M, group=("p2",)))
    copy = lifecycle(for_ms=5 * M, keep_firing_for_ms=5 * M)
    copy.restore(rule.snapshot())
    for target in (rule, copy):
        target.update(off(T0 + 7 * M, group=("f",)))
    assert rule.advance(T0 + 60 * M) == copy.advance(T0 + 60 * M)


def test_restore_refuses_another_rule() -> None:
    with pytest.raises(ValueError, match="brute_force"):
        lifecycle(rule="other").restore(lifecycle().snapshot())
