"""Scrapes a node's /metrics with the Prometheus client library's own parser (what a
Prometheus-compatible collector reads) and prints every sample as JSON, one line:
SAMPLES [[name, {labels}, value], ...]. Usage: metrics_scrape.py http://HOST:PORT/metrics"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

url = sys.argv[1]
with urllib.request.urlopen(url, timeout=10) as response:
    assert response.status == 200, response.status
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith("text/plain"), content_type
    text = response.read().decode("utf-8")

samples = []
families = 0
for family in text_string_to_metric_families(text):
    families += 1
    # Every family the node exports is described (HELP) and typed (TYPE).
    assert family.documentation, family.name
    assert family.type in ("counter", "gauge", "histogram"), (family.name, family.type)
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
assert families > 0
print("SAMPLES " + json.dumps(samples))
print("== OK")
