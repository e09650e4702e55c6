#!/usr/bin/env python3
"""Generate everything in dashboards/ from the metric model (observe/metrics.py).

    dashboards/generate.py           # (re)write the committed files
    dashboards/generate.py --check   # exit 1, naming the stale files, if they differ

The committed JSON and YAML are what Grafana and Prometheus load; the
package generator/ beside this script is where they are written (its
__init__ lists the modules), so a metric renamed in observe/metrics.py is a
regeneration away (and `--check`, run by the tests, fails until it is done).
Every metric a panel or rule names is checked against what the exporter
really exposes: a panel that names a metric the exporter does not export
stops generation with an error naming the panel and the metric.

Style follows node_exporter's node-mixin: the selector is configurable
(generator/config.py), uids are stable, every dashboard has a datasource
variable and `instance`/`device` variables from label_values(), every
rate() uses $__rate_interval, histograms are heatmaps, alerts carry
severity, summary and description.
"""

import sys
from pathlib import Path

# dashboards/ is a directory of the checkout, not an installed package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboards.generator.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(description=__doc__.split("\n\n")[0]))
