"""Operator views over the usage records: JSON for dashboards, a Grafana SimpleJSON datasource, anomalies."""
