"""Monitoring: probes that speak, the uptime store, alerts, the status view, Prometheus series."""
