"""The `tracing` section from the standard OpenTelemetry variables, and the Sentry settings from SENTRY_*."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayz.observability.otel import Tracing, public_url
from gatewayz.settings import ConfigError, TracingConfig, load_settings


def test_tracing_is_off_without_an_exporter_or_endpoint() -> None:
    s = load_settings(env={"OTEL_SERVICE_NAME": "gw"})
    assert s.tracing.exporter == "none" and not s.tracing.enabled and s.tracing.service_name == "gw"


def test_an_endpoint_alone_turns_otlp_export_on() -> None:
    t = load_settings(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318/"}).tracing
    assert t.enabled and t.exporter == "otlp" and t.endpoint == "http://tempo:4318/v1/traces"
    # The traces endpoint is a full URL and wins over the base one.
    t = load_settings(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318",
                           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector/custom/traces"}).tracing
    assert t.endpoint == "https://collector/custom/traces"


def test_every_standard_variable_is_read() -> None:
    t = load_settings(env={
        "OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Basic%20abc, x-team=ml",
        "OTEL_SERVICE_NAME": "edge-gw", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=ml"}).tracing
    assert t.exporter == "console" and t.headers == {"authorization": "Basic abc", "x-team": "ml"}
    assert t.sampler == "parentbased_traceidratio" and t.sampler_arg == 0.25 and t.service_name == "edge-gw"
    assert t.resource_attributes == {"deployment.environment": "prod", "team": "ml"}


def test_disabled_and_none_win() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318"}
    assert not load_settings(env={**env, "OTEL_SDK_DISABLED": "true"}).tracing.enabled
    assert not load_settings(env={**env, "OTEL_TRACES_EXPORTER": "none"}).tracing.enabled


def test_the_file_configures_tracing_and_the_environment_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "gatewayz.yaml"
    config.write_text("tracing: {exporter: otlp, endpoint: 'http://file:4318/v1/traces', sampler: always_on}\n")
    t = load_settings(config, env={}).tracing
    assert t.enabled and t.endpoint == "http://file:4318/v1/traces" and t.sampler == "always_on"
    t = load_settings(config, env={"OTEL_TRACES_SAMPLER": "always_off"}).tracing
    assert t.endpoint == "http://file:4318/v1/traces" and t.sampler == "always_off"


@pytest.mark.parametrize("env, field", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "tracing.exporter"),
    ({"OTEL_TRACES_SAMPLER": "sometimes"}, "tracing.sampler"),
    ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "tracing.sampler_arg"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "tempo:4318"}, "tracing.endpoint"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "=x"}, "OTEL_RESOURCE_ATTRIBUTES"),
    ({"SENTRY_TRACES_SAMPLE_RATE": "1.5"}, "sentry_traces_sample_rate"),
])
def test_bad_values_name_what_is_wrong(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(env=env)


def test_sentry_settings_come_from_the_environment() -> None:
    s = load_settings(env={"SENTRY_DSN": "https://pub@sentry.example/4", "SENTRY_ENVIRONMENT": "staging",
                           "SENTRY_TRACES_SAMPLE_RATE": "0.1"})
    assert (s.sentry_dsn, s.sentry_environment, s.sentry_traces_sample_rate) == \
        ("https://pub@sentry.example/4", "staging", 0.1)
    assert load_settings(env={}).sentry_dsn is None


@pytest.mark.parametrize("sampler, arg, sampled", [
    ("always_on", 1.0, True), ("always_off", 1.0, False), ("traceidratio", 0.0, False), ("traceidratio", 1.0, True),
    ("parentbased_always_off", 1.0, False), ("parentbased_traceidratio", 1.0, True)])
def test_the_sampler_is_applied(sampler: str, arg: float, sampled: bool) -> None:
    tracing = Tracing(TracingConfig(exporter="console", sampler=sampler, sampler_arg=arg))  # type: ignore[arg-type]
    try:
        span = tracing.tracer.start_span("x")
        assert span.get_span_context().trace_flags.sampled is sampled
        span.end()
    finally:
        tracing.shutdown()


def test_credentials_in_the_endpoint_are_not_shown() -> None:
    assert public_url("https://user:secret@collector:4318/v1/traces") == "https://collector:4318/v1/traces"
    assert public_url("http://collector/v1/traces") == "http://collector/v1/traces"
