#!/usr/bin/env bash
# Copies the dashboard's browser assets (htmx, uPlot: exact versions in package.json) from
# node_modules into the package's gitignored static/vendor, which it serves at /static/vendor/
# (no CDN: it works offline). Run by `make install`; the Dockerfile's assets stage runs it too.
set -euo pipefail
cd "$(dirname "$0")/.."
out=services/dashboard/src/conveyor_dashboard/static/vendor
mkdir -p "$out"
cp node_modules/htmx.org/dist/htmx.min.js "$out/"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css "$out/"
cp node_modules/htmx.org/LICENSE "$out/htmx.LICENSE" 2>/dev/null || true
cp node_modules/uplot/LICENSE "$out/uPlot.LICENSE" 2>/dev/null || true
