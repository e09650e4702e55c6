"""Grafana panel builders: a query target, the grid layout, the panel
kinds the dashboards use, the variables and the dashboard around them."""

from observe import metrics as m

from .config import CONFIG, DASH_SEL, INST_SEL, RATE_INTERVAL, SEL
from .queries import info, q_heatmap

DS = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24


def target(expr, legend="", ref="A", instant=False, fmt=None):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t.update(instant=True, range=False, format="table")
    if fmt:
        t["format"] = fmt
    return t


class Layout:
    """Hands out ids and gridPos on Grafana's 24-column grid, left to right."""

    def __init__(self):
        self.id = 0
        self.x = self.y = 0
        self.row_h = 0

    def place(self, w, h):
        if self.x + w > GRID_COLUMNS:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.id += 1
        return self.id, pos

    def row(self, title):
        if self.x:
            self.x, self.y = 0, self.y + self.row_h
        self.id += 1
        p = {"type": "row", "id": self.id, "title": title, "collapsed": False, "panels": [],
             "gridPos": {"x": 0, "y": self.y, "w": GRID_COLUMNS, "h": 1}}
        self.y += 1
        self.row_h = 0
        return p


def _panel(lay, kind, title, description, w, h):
    """The keys every panel starts with, in Grafana's order."""
    pid, pos = lay.place(w, h)
    return {"type": kind, "id": pid, "title": title, "description": description, "datasource": DS, "gridPos": pos}


def timeseries(lay, title, targets, unit, description="", w=12, h=8, stack=False, maxv=None):
    defaults = {"unit": unit, "custom": {"fillOpacity": 10, "showPoints": "never",
                                         "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}
    if maxv is not None:
        defaults.update(min=0, max=maxv)
    return {**_panel(lay, "timeseries", title, description, w, h), "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def heatmap(lay, title, name, unit, description="", w=12, h=8):
    """A histogram's buckets as exported (Grafana does not recalculate them)."""
    return {**_panel(lay, "heatmap", title, description, w, h), "maxDataPoints": 60,
            "targets": [target(q_heatmap(name, DASH_SEL, RATE_INTERVAL), "{{le}}", fmt="heatmap")],
            "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"}}}, "overrides": []},
            "options": {"calculate": False, "cellGap": 1, "yAxis": {"unit": unit, "axisPlacement": "left"},
                        "rowsFrame": {"layout": "auto"}, "color": {"mode": "scheme", "scheme": "Oranges",
                                                                   "exponent": 0.5, "steps": 64},
                        "tooltip": {"mode": "single", "yHistogram": True}, "legend": {"show": True},
                        "showValue": "never", "exemplars": {"color": "rgba(255,0,255,0.7)"}}}


def stat(lay, title, targets, unit="none", w=6, h=4, text_mode="auto", description=""):
    return {**_panel(lay, "stat", title, description, w, h), "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "textMode": text_mode, "colorMode": "none", "graphMode": "none"}}


def variables(multi: bool):
    """The datasource, then instance and device from label_values(); the
    device list follows the chosen instance."""
    ds = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
          "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}

    def query_variable(name, label, query):
        v = {"name": name, "label": label, "type": "query", "datasource": DS,
             "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
             "refresh": 2, "sort": 1, "hide": 0, "regex": "", "current": {}, "options": [],
             "multi": multi, "includeAll": multi}
        if multi:
            v["allValue"] = ".+"
        return v
    return [ds,
            query_variable("instance", "Instance", f"label_values({m.SCRAPE_SUCCESS}{{{SEL}}}, instance)"),
            query_variable("device", "Camera", f"label_values({info(m.CAMERA_INFO)}{{{INST_SEL}}}, device)")]


def link_to(uid, title):
    """A dashboard link that keeps the variables and the time range."""
    return {"title": title, "type": "link", "url": f"/d/{CONFIG['uid_prefix']}{uid}",
            "includeVars": True, "keepTime": True, "icon": "dashboard"}


def dashboard(uid, title, description, panels, multi, links):
    return {
        "uid": CONFIG["uid_prefix"] + uid, "title": title, "description": description,
        "tags": ["vcam"], "timezone": "", "editable": True, "graphTooltip": 1, "refresh": "30s",
        "schemaVersion": CONFIG["grafana_schema_version"], "version": 1,
        "time": {"from": "now-1h", "to": "now"}, "timepicker": {},
        "templating": {"list": variables(multi)},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": links, "panels": panels, "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
    }
