"""Grafana's provisioning files and a lab's Prometheus scrape configuration."""

from .config import CONFIG


def provisioning_datasource():
    return {"apiVersion": 1, "datasources": [{
        "name": "Prometheus (vcam)", "uid": CONFIG["datasource_uid"], "type": "prometheus", "access": "proxy",
        "url": "http://localhost:9090", "isDefault": False, "editable": True,
        "jsonData": {"timeInterval": "15s"}}]}


def provisioning_dashboards():
    return {"apiVersion": 1, "providers": [{
        "name": "vcam", "orgId": 1, "folder": "vcam", "type": "file", "disableDeletion": False,
        "allowUiUpdates": False, "updateIntervalSeconds": 60,
        # where this dashboards/ directory is dropped into the Grafana installation
        "options": {"path": "/etc/grafana/dashboards/vcam", "foldersFromFilesStructure": False}}]}


def prometheus_config():
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": ["vcam-rules.yml", "vcam-alerts.yml"],
        "scrape_configs": [{
            "job_name": CONFIG["job"],
            # static targets: lab machines running `vcam-observe export --listen 0.0.0.0:9477`
            "static_configs": [{"targets": ["lab1.example:9477", "lab2.example:9477"], "labels": {"lab": "bench"}}],
            # and more, from files a provisioning tool writes (see targets/vcam-lab.json)
            "file_sd_configs": [{"files": ["targets/*.json"], "refresh_interval": "1m"}],
        }],
    }


def file_sd_example():
    return [{"targets": ["lab3.example:9477", "lab4.example:9477"], "labels": {"lab": "rack2"}}]
