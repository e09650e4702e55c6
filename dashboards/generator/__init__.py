"""The generator of everything else in dashboards/, one module a concern:

    config        the node-mixin style settings and the selectors every query shares
    queries       the dashboards' quantities, one PromQL builder each
    rules         recording rules (those quantities at a fixed window) and alerts
    alert_tests   promtool unit tests of the alerts, one row a case
    panels        Grafana panel builders and their grid layout
    boards        the two dashboards
    provisioning  Grafana provisioning and the Prometheus scrape configuration
    check         every metric a query names is one the exporter exposes
    main          the files, written or checked (dashboards/generate.py runs it)
"""
