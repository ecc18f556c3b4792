// The overview's live numbers and chart: one EventSource; the server polls once for everyone.
(() => {
  const root = document.querySelector("[data-sse]");
  const chartEl = document.getElementById("chart");
  if (!root || !chartEl) return;
  const history = JSON.parse(chartEl.dataset.history || "[]");
  const data = [[], [], [], []];
  for (const [t, done, failed, wait] of history) { data[0].push(t); data[1].push(done); data[2].push(failed); data[3].push(wait); }
  const opts = {
    width: Math.max(320, chartEl.clientWidth - 4), height: 240,
    series: [{}, { label: "done/s", stroke: "#2f6fdb" }, { label: "failed/s", stroke: "#c0392b" },
             { label: "p95 wait s", stroke: "#8e44ad", scale: "s" }],
    axes: [{}, {}, { scale: "s", side: 1, grid: { show: false } }],
  };
  const chart = new uPlot(opts, data, chartEl);
  const fmt = (s) => s == null ? "—" : s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(1) + " s";
  const set = (name, value) => { const el = document.querySelector(`[data-live="${name}"]`); if (el) el.textContent = value; };
  const source = new EventSource(root.dataset.sse);
  source.addEventListener("overview", (e) => {
    const snap = JSON.parse(e.data);
    for (const w of snap.windows) {
      set(`throughput-${w.minutes}`, w.throughput); set(`failures-${w.minutes}`, w.failed); set(`wait-${w.minutes}`, fmt(w.wait_p95));
    }
    set("workers", snap.workers_online); set("leader", snap.beat_leader || "—");
    for (const q of snap.backlog) {
      const cell = document.querySelector(`#backlog tr[data-queue="${CSS.escape(q.queue)}"] [data-testid=queued]`);
      if (cell) cell.textContent = q.queued;
    }
    // The last minutes again: replace the points we have, append the new one, keep an hour.
    for (const point of snap.recent) {
      const i = data[0].lastIndexOf(point[0]);
      if (i >= 0) for (let s = 0; s < 4; s++) data[s][i] = point[s];
      else if (!data[0].length || point[0] > data[0][data[0].length - 1]) for (let s = 0; s < 4; s++) data[s].push(point[s]);
    }
    while (data[0].length > 60) for (const s of data) s.shift();
    chart.setData(data);
    root.dataset.pushes = String((Number(root.dataset.pushes) || 0) + 1);  // for tests and the curious
  });
  window.addEventListener("pagehide", () => source.close());
})();
